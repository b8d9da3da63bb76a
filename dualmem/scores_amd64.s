#include "textflag.h"

// func dotLanes4(k0, k1, k2, k3, x *float32, n int, out *[16]float32)
// out[4r+l] = Σ_m k_r[4m+l]·x[4m+l] over m = 0..n/4−1, each product rounded to float32 and
// added in order of m (MULPS then ADDPS, never fused): dot32's four chains for rows r = 0..3.
// n must be a positive multiple of 4. SSE only.
TEXT ·dotLanes4(SB), NOSPLIT, $0-56
	MOVQ k0+0(FP), SI
	MOVQ k1+8(FP), R9
	MOVQ k2+16(FP), R10
	MOVQ k3+24(FP), R11
	MOVQ x+32(FP), DI
	MOVQ n+40(FP), CX
	SHLQ $2, CX
	MOVQ out+48(FP), R8
	XORPS X0, X0
	XORPS X1, X1
	XORPS X2, X2
	XORPS X3, X3
	XORQ AX, AX

loop:
	MOVUPS (DI)(AX*1), X4
	MOVUPS (SI)(AX*1), X5
	MULPS  X4, X5
	ADDPS  X5, X0
	MOVUPS (R9)(AX*1), X6
	MULPS  X4, X6
	ADDPS  X6, X1
	MOVUPS (R10)(AX*1), X7
	MULPS  X4, X7
	ADDPS  X7, X2
	MOVUPS (R11)(AX*1), X8
	MULPS  X4, X8
	ADDPS  X8, X3
	ADDQ   $16, AX
	CMPQ   AX, CX
	JL     loop

	MOVUPS X0, 0(R8)
	MOVUPS X1, 16(R8)
	MOVUPS X2, 32(R8)
	MOVUPS X3, 48(R8)
	RET
