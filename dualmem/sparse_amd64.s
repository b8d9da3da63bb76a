#include "textflag.h"

// VEC encodes the 8 floats at off(SI), the group's lanes shift..shift+7: their zero bits into
// R10, the bits of those that are -0 into R11, the others packed to (R8), advancing R8.
#define VEC(off, shift) \
	VMOVUPS   off(SI), Y0; \
	VPAND     Y12, Y0, Y1; \
	VPCMPEQD  Y13, Y1, Y1; \
	VMOVMSKPS Y1, AX; \
	VMOVMSKPS Y0, BX; \
	ANDL      AX, BX; \
	MOVL      AX, DX; \
	XORL      $0xff, DX; \
	SHLQ      $shift, AX; \
	ORQ       AX, R10; \
	SHLQ      $shift, BX; \
	ORQ       BX, R11; \
	MOVQ      DX, R13; \
	SHLQ      $5, R13; \
	VMOVDQU   (R9)(R13*1), Y2; \
	VPERMD    Y0, Y2, Y3; \
	VMOVDQU   Y3, (R8); \
	POPCNTL   DX, DX; \
	LEAQ      (R8)(DX*4), R8

// func sparseEncodeAVX(masks *byte, vals *byte, src *float32, groups int, lut *[256][8]int32) int
// Encodes groups (> 0) groups of 64 floats from src: per group its zero and -0 masks at
// masks, the other values packed from vals on; returns the bytes of values written. The
// stores of packed values run up to 28 bytes past the last one, never past 4·64·groups bytes
// from vals. AVX2 and POPCNT.
TEXT ·sparseEncodeAVX(SB), NOSPLIT, $0-48
	MOVQ masks+0(FP), DI
	MOVQ vals+8(FP), R8
	MOVQ src+16(FP), SI
	MOVQ groups+24(FP), CX
	MOVQ lut+32(FP), R9
	MOVQ R8, R12
	MOVL $0x7fffffff, AX
	VMOVD AX, X12
	VPBROADCASTD X12, Y12
	VPXOR Y13, Y13, Y13

group:
	XORQ R10, R10
	XORQ R11, R11
	VEC(0, 0)
	VEC(32, 8)
	VEC(64, 16)
	VEC(96, 24)
	VEC(128, 32)
	VEC(160, 40)
	VEC(192, 48)
	VEC(224, 56)
	MOVQ R10, (DI)
	MOVQ R11, 8(DI)
	ADDQ $16, DI
	ADDQ $256, SI
	DECQ CX
	JNZ  group

	SUBQ R12, R8
	MOVQ R8, ret+40(FP)
	VZEROUPPER
	RET
