#include "textflag.h"

// func dot4xq(k *float32, kstride int, xs *float32, q int, d int, out *float32, ostride int)
// For keys r = 0..3 (rows kstride floats apart) and every query c = 0..q−1 (rows of d floats
// of xs), out[c*ostride+r] = k_r·x_c: eight FMA chains l0..l7 over p mod 8, then
// ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)). Queries go in pairs (an odd last one is paired with
// itself), 4 keys × 2 queries per inner loop. d must be a positive multiple of 8, q at
// least 1. AVX2 + FMA.
TEXT ·dot4xq(SB), NOSPLIT, $0-56
	MOVQ k+0(FP), SI
	MOVQ kstride+8(FP), BX
	SHLQ $2, BX
	MOVQ xs+16(FP), DI
	MOVQ q+24(FP), R14
	MOVQ d+32(FP), CX
	SHLQ $2, CX
	MOVQ out+40(FP), R8
	MOVQ ostride+48(FP), R13
	SHLQ $2, R13
	LEAQ (SI)(BX*1), R9
	LEAQ (R9)(BX*1), R10
	LEAQ (R10)(BX*1), R11
	// Prefetch the four keys eight keys ahead (a prefetch never faults past the end).
	LEAQ (SI)(BX*8), DX
	LEAQ (DX)(BX*4), R12

prefetch:
	PREFETCHT0 (DX)
	ADDQ $64, DX
	CMPQ DX, R12
	JL   prefetch

qloop:
	MOVQ CX, DX
	CMPQ R14, $1
	JNE  pair
	XORQ DX, DX

pair:
	LEAQ (DI)(DX*1), R12
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	XORQ AX, AX

qdot:
	VMOVUPS (DI)(AX*1), Y8
	VMOVUPS (R12)(AX*1), Y9
	VMOVUPS (SI)(AX*1), Y10
	VFMADD231PS Y8, Y10, Y0
	VFMADD231PS Y9, Y10, Y1
	VMOVUPS (R9)(AX*1), Y11
	VFMADD231PS Y8, Y11, Y2
	VFMADD231PS Y9, Y11, Y3
	VMOVUPS (R10)(AX*1), Y10
	VFMADD231PS Y8, Y10, Y4
	VFMADD231PS Y9, Y10, Y5
	VMOVUPS (R11)(AX*1), Y11
	VFMADD231PS Y8, Y11, Y6
	VFMADD231PS Y9, Y11, Y7
	ADDQ $32, AX
	CMPQ AX, CX
	JL   qdot

	VHADDPS Y1, Y0, Y8
	VHADDPS Y3, Y2, Y9
	VHADDPS Y5, Y4, Y10
	VHADDPS Y7, Y6, Y11
	VHADDPS Y9, Y8, Y8
	VHADDPS Y11, Y10, Y10
	VPERM2F128 $0x20, Y10, Y8, Y0
	VPERM2F128 $0x31, Y10, Y8, Y1
	VADDPS Y1, Y0, Y0
	// Y0 = [k0x0 k0x1 k1x0 k1x1 | k2x0 k2x1 k3x0 k3x1]: one row of four keys per query.
	VEXTRACTF128 $1, Y0, X1
	VSHUFPS $0x88, X1, X0, X2
	VMOVUPS X2, (R8)
	CMPQ R14, $1
	JEQ  qdone
	VSHUFPS $0xDD, X1, X0, X3
	VMOVUPS X3, (R8)(R13*1)
	LEAQ (R8)(R13*2), R8
	LEAQ (DI)(CX*2), DI
	SUBQ $2, R14
	JNZ  qloop

qdone:
	VZEROUPPER
	RET

// func dot8x1(k *[8]*float32, x *float32, d int, out *[8]float32)
// out[r] = k[r]·x for the rows r = 0..7 with dot4xq's arithmetic (eight FMA chains over
// p mod 8, then ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7))), so a scattered token gets the α and
// projection the scan computes. d must be a positive multiple of 8. AVX2 + FMA.
TEXT ·dot8x1(SB), NOSPLIT, $0-32
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
	MOVQ d+16(FP), CX
	SHLQ $2, CX
	MOVQ out+24(FP), DX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	XORQ BX, BX

rows8:
	VMOVUPS (DI)(BX*1), Y8
	VMOVUPS (SI)(BX*1), Y9
	VFMADD231PS Y8, Y9, Y0
	VMOVUPS (R8)(BX*1), Y10
	VFMADD231PS Y8, Y10, Y1
	VMOVUPS (R9)(BX*1), Y11
	VFMADD231PS Y8, Y11, Y2
	VMOVUPS (R10)(BX*1), Y12
	VFMADD231PS Y8, Y12, Y3
	VMOVUPS (R11)(BX*1), Y13
	VFMADD231PS Y8, Y13, Y4
	VMOVUPS (R12)(BX*1), Y14
	VFMADD231PS Y8, Y14, Y5
	VMOVUPS (R13)(BX*1), Y15
	VFMADD231PS Y8, Y15, Y6
	VMOVUPS (R14)(BX*1), Y9
	VFMADD231PS Y8, Y9, Y7
	ADDQ $32, BX
	CMPQ BX, CX
	JL   rows8

	VHADDPS Y1, Y0, Y8
	VHADDPS Y3, Y2, Y9
	VHADDPS Y5, Y4, Y10
	VHADDPS Y7, Y6, Y11
	VHADDPS Y9, Y8, Y8
	VHADDPS Y11, Y10, Y10
	VPERM2F128 $0x20, Y10, Y8, Y0
	VPERM2F128 $0x31, Y10, Y8, Y1
	VADDPS Y1, Y0, Y0
	VMOVUPS Y0, (DX)
	VZEROUPPER
	RET
