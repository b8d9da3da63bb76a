package dualmem

import "math"

// f32ToF16 converts to IEEE 754 binary16 with round-to-nearest-even; values beyond the
// half range become ±Inf, NaN stays NaN (quiet).
func f32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	man := b & 0x7fffff
	if exp == 0xff {
		if man != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Subnormal half: m·2^-24 with m = (1.man)·2^(exp-126) before rounding.
		shift := uint(14 - e)
		if shift > 24 {
			return sign // below half the smallest subnormal
		}
		full := man | 0x800000
		h := full >> shift
		rem, half := full&(1<<shift-1), uint32(1)<<(shift-1)
		if rem > half || (rem == half && h&1 == 1) {
			h++ // may carry into the smallest normal, which is correct
		}
		return sign | uint16(h)
	}
	h := uint16(e)<<10 | uint16(man>>13)
	rem := man & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++ // a carry into the exponent rounds up to the next binade or to Inf
	}
	return sign | h
}

// f16ToF32 converts IEEE 754 binary16 to float32 exactly.
func f16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	man := uint32(h & 0x3ff)
	switch {
	case exp == 0:
		v := float32(man) * (1.0 / (1 << 24))
		return math.Float32frombits(math.Float32bits(v) | sign)
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | man<<13)
}

// f16Exponent picks a power-of-two scale 2^s for a block whose largest magnitude is maxAbs,
// so that maxAbs/2^s lies in [2^14, 2^15]: tiny gradients (they carry 1/N) then keep the
// full 11-bit precision of half floats instead of falling into subnormals, and nothing
// overflows. Scaling by a power of two is exact.
func f16Exponent(maxAbs float32) int16 {
	if maxAbs == 0 || math.IsInf(float64(maxAbs), 0) || math.IsNaN(float64(maxAbs)) {
		return 0
	}
	_, e := math.Frexp(float64(maxAbs))
	return int16(e - 15)
}
