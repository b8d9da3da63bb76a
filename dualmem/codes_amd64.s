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
