package dualmem

// ScanStats says how much of a layer's keys and gradients an answer read: bytes, and
// blocks read whole or in part, against the memory's totals. A full scan's blocks are
// training steps; a pruned search's are its own (search.go).
type ScanStats struct {
	BytesRead   int64 `json:"bytes_read"`
	BytesTotal  int64 `json:"bytes_total"`
	BlocksRead  int64 `json:"blocks_read"`
	BlocksTotal int64 `json:"blocks_total"`
}

// Plus adds what b read to what a read; the totals are a's (both describe one memory).
func (a ScanStats) Plus(b ScanStats) ScanStats {
	a.BytesRead += b.BytesRead
	a.BlocksRead += b.BlocksRead
	return a
}

// tokenBytes is what one token's key and gradient take.
func (s *Scanner) tokenBytes() int64 { return int64(4 * (s.DIn + s.DOut)) }

// NoneRead is the layer's totals with nothing read.
func (s *Scanner) NoneRead() ScanStats {
	return ScanStats{BytesTotal: int64(s.N) * s.tokenBytes(), BlocksTotal: int64(len(s.Mem.Steps))}
}

// RangeRead is what one pass over memory tokens [from, to) reads: every key and gradient
// of the range, and every step it touches.
func (s *Scanner) RangeRead(from, to int) ScanStats {
	st := s.NoneRead()
	if to <= from {
		return st
	}
	st.BytesRead = int64(to-from) * s.tokenBytes()
	st.BlocksRead = int64(s.StepIndex(to-1) - s.StepIndex(from) + 1)
	return st
}

// TokensRead is what reading n single tokens' keys and gradients reads (their blocks are
// not counted: they are usually read by a pass already).
func (s *Scanner) TokensRead(n int) ScanStats {
	st := s.NoneRead()
	st.BytesRead = int64(n) * s.tokenBytes()
	return st
}
