#include "textflag.h"

// func widenI8AVX(dst *float32, src *int8, n int)
// dst[i] = float32(src[i]) for i < n; n a positive multiple of 16. AVX2.
TEXT ·widenI8AVX(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	XORQ BX, BX

loop16:
	VPMOVSXBD (SI)(BX*1), Y0
	VPMOVSXBD 8(SI)(BX*1), Y1
	VCVTDQ2PS Y0, Y0
	VCVTDQ2PS Y1, Y1
	VMOVUPS   Y0, (DI)(BX*4)
	VMOVUPS   Y1, 32(DI)(BX*4)
	ADDQ      $16, BX
	CMPQ      BX, CX
	JL        loop16
	VZEROUPPER
	RET

// func mulF32AVX(dst, a, b *float32, n int)
// dst[i] = a[i]·b[i] for i < n; n a positive multiple of 8. AVX.
TEXT ·mulF32AVX(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ n+24(FP), CX
	XORQ BX, BX

mul8:
	VMOVUPS (SI)(BX*4), Y0
	VMULPS  (DX)(BX*4), Y0, Y0
	VMOVUPS Y0, (DI)(BX*4)
	ADDQ    $8, BX
	CMPQ    BX, CX
	JL      mul8
	VZEROUPPER
	RET

// func outsideAVX(v *float32, n int, lo, hi float32) uint64
// Bit i of the result is set unless lo < v[i] < hi (ordered: a NaN is outside), for
// i < n; n a positive multiple of 8, at most 64. AVX.
TEXT ·outsideAVX(SB), NOSPLIT, $0-32
	MOVQ         v+0(FP), SI
	MOVQ         n+8(FP), R9
	VBROADCASTSS lo+16(FP), Y1
	VBROADCASTSS hi+20(FP), Y2
	XORQ         AX, AX
	XORQ         CX, CX // the index, and the mask's shift (a variable shift takes CX)

out8:
	VMOVUPS   (SI)(CX*4), Y0
	VCMPPS    $0x1e, Y1, Y0, Y3 // v > lo, ordered
	VCMPPS    $0x11, Y2, Y0, Y4 // v < hi, ordered
	VANDPS    Y4, Y3, Y3
	VMOVMSKPS Y3, R8
	XORQ      $0xff, R8
	SHLQ      CX, R8
	ORQ       R8, AX
	ADDQ      $8, CX
	CMPQ      CX, R9
	JL        out8
	VZEROUPPER
	MOVQ      AX, ret+24(FP)
	RET
