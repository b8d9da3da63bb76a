#include "textflag.h"

// func dotLanes8(k *[8]*float32, x *float32, n int, out *[32]float32)
// out[4r+l] = Σ_m k[r][4m+l]·x[4m+l] over m = 0..n/4−1, each product rounded to float32 and
// added in order of m (MULPS then ADDPS, never fused): dot32's four chains for the rows
// r = 0..7, eight at a time so that their additions overlap. n must be a positive multiple
// of 4. SSE only.
TEXT ·dotLanes8(SB), NOSPLIT, $0-32
	MOVQ k+0(FP), AX
	MOVQ 0(AX), SI
	MOVQ 8(AX), R8
	MOVQ 16(AX), R9
	MOVQ 24(AX), R10
	MOVQ 32(AX), R11
	MOVQ 40(AX), R12
	MOVQ 48(AX), R13
	MOVQ 56(AX), R14
	MOVQ x+8(FP), DI
	MOVQ n+16(FP), CX
	SHLQ $2, CX
	MOVQ out+24(FP), DX
	XORPS X0, X0
	XORPS X1, X1
	XORPS X2, X2
	XORPS X3, X3
	XORPS X4, X4
	XORPS X5, X5
	XORPS X6, X6
	XORPS X7, X7
	XORQ BX, BX

loop8:
	MOVUPS (DI)(BX*1), X8
	MOVUPS (SI)(BX*1), X9
	MULPS  X8, X9
	ADDPS  X9, X0
	MOVUPS (R8)(BX*1), X10
	MULPS  X8, X10
	ADDPS  X10, X1
	MOVUPS (R9)(BX*1), X11
	MULPS  X8, X11
	ADDPS  X11, X2
	MOVUPS (R10)(BX*1), X12
	MULPS  X8, X12
	ADDPS  X12, X3
	MOVUPS (R11)(BX*1), X13
	MULPS  X8, X13
	ADDPS  X13, X4
	MOVUPS (R12)(BX*1), X14
	MULPS  X8, X14
	ADDPS  X14, X5
	MOVUPS (R13)(BX*1), X15
	MULPS  X8, X15
	ADDPS  X15, X6
	MOVUPS (R14)(BX*1), X9
	MULPS  X8, X9
	ADDPS  X9, X7
	ADDQ   $16, BX
	CMPQ   BX, CX
	JL     loop8

	MOVUPS X0, 0(DX)
	MOVUPS X1, 16(DX)
	MOVUPS X2, 32(DX)
	MOVUPS X3, 48(DX)
	MOVUPS X4, 64(DX)
	MOVUPS X5, 80(DX)
	MOVUPS X6, 96(DX)
	MOVUPS X7, 112(DX)
	RET
