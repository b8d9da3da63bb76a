package gomlxpatch

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Register tile of the micro-kernel and cache blocking (BLIS-style: an nc×kc panel of the rhs,
// an mc×kc block of the lhs, micro-panels of mr rows / nr columns).
const (
	mr    = 6
	nr    = 16
	kcMax = 256
	mcMax = 144
	ncMax = 2048
)

// axis2 addresses one operand of the normalised problem: element (i, k) is at
// base + rows[i] + cols[k].
type axis2 struct {
	rows, cols             []int
	rowsContig, colsContig bool // rows[i] == rows[0]+i (resp. cols)
}

func contiguous(t []int) bool {
	for i := range t {
		if t[i] != t[0]+i {
			return false
		}
	}
	return true
}

func newAxis2(rows, cols []int) axis2 {
	return axis2{rows: rows, cols: cols, rowsContig: contiguous(rows), colsContig: contiguous(cols)}
}

// problem is out[b, i, j] = Σ_k A[b, i, k]·B[b, j, k], out contiguous [batch, m, n].
type problem struct {
	batch, m, n, k int
	aBatch, bBatch []int
	a, b           axis2
}

type scratch struct {
	ap, bp []float32
	tile   [mr * nr]float32
}

var scratchPool = sync.Pool{New: func() any { return &scratch{} }}

func getScratch() *scratch { return scratchPool.Get().(*scratch) }

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// parallel runs fn(0..n-1), fn(0) on the calling goroutine.
func parallel(n int, fn func(w int)) {
	if n <= 1 {
		fn(0)
		return
	}
	var wg sync.WaitGroup
	wg.Add(n - 1)
	for w := 1; w < n; w++ {
		go func() { defer wg.Done(); fn(w) }()
	}
	fn(0)
	wg.Wait()
}

// tasksPerWorker is how finely shared work is cut: with fixed shares, a worker that the
// system deschedules for a while (the capture's writer, another job) holds up the whole op
// by its share; with small tasks taken in turn, by one task.
const tasksPerWorker = 4

// spread runs fn(w, t) for every task t in [0, tasks) on up to workers goroutines, which take
// the tasks in turn; w identifies the goroutine (for its scratch space). Which goroutine
// runs a task does not change what the task computes.
func spread(workers, tasks int, fn func(w, t int)) {
	var next atomic.Int64
	parallel(min(workers, tasks), func(w int) {
		for t := int(next.Add(1) - 1); t < tasks; t = int(next.Add(1) - 1) {
			fn(w, t)
		}
	})
}

// maxWorkers is the parallelism used; tests may lower it.
var maxWorkers = func() int { return runtime.GOMAXPROCS(0) }

func (p *problem) run(a, b, c []float32) {
	clear(c)
	mn := p.m * p.n
	workers := maxWorkers()
	flops := p.batch * mn * p.k
	if workers > 1 && flops < 1<<16 {
		workers = 1
	}
	switch {
	case workers <= 1:
		s := getScratch()
		for bi := range p.batch {
			p.gemm(s, a, b, c[bi*mn:(bi+1)*mn], p.aBatch[bi], p.bBatch[bi])
		}
		scratchPool.Put(s)
	case p.batch >= workers:
		// Whole matrix products per task.
		ss := scratches(workers)
		spread(len(ss), p.batch, func(w, bi int) {
			p.gemm(ss[w], a, b, c[bi*mn:(bi+1)*mn], p.aBatch[bi], p.bBatch[bi])
		})
		putScratches(ss)
	default:
		for bi := range p.batch {
			p.gemmParallel(workers, a, b, c[bi*mn:(bi+1)*mn], p.aBatch[bi], p.bBatch[bi])
		}
	}
}

func scratches(n int) []*scratch {
	ss := make([]*scratch, n)
	for i := range ss {
		ss[i] = getScratch()
	}
	return ss
}

func putScratches(ss []*scratch) {
	for _, s := range ss {
		scratchPool.Put(s)
	}
}

// gemm computes one matrix product c[m×n] += A·Bᵀ on the calling goroutine.
func (p *problem) gemm(s *scratch, a, b, c []float32, aBase, bBase int) {
	for jc := 0; jc < p.n; jc += ncMax {
		ncur := min(ncMax, p.n-jc)
		for pc := 0; pc < p.k; pc += kcMax {
			kcur := min(kcMax, p.k-pc)
			s.bp = grow(s.bp, roundUp(ncur, nr)*kcur)
			pack(s.bp, b, bBase, &p.b, jc, ncur, pc, kcur, nr)
			for ic := 0; ic < p.m; ic += mcMax {
				mcur := min(mcMax, p.m-ic)
				s.ap = grow(s.ap, roundUp(mcur, mr)*kcur)
				pack(s.ap, a, aBase, &p.a, ic, mcur, pc, kcur, mr)
				macro(s, c, p.n, ic, mcur, jc, ncur, kcur)
			}
		}
	}
}

// gemmParallel is gemm with the rhs packing and the rows of the output split over workers.
func (p *problem) gemmParallel(workers int, a, b, c []float32, aBase, bBase int) {
	mPanels := (p.m + mr - 1) / mr
	workers = min(workers, mPanels)
	// Row tasks of whole micro-panels, at most a cache block each.
	rows := min(mcMax, mr*max(1, (mPanels+tasksPerWorker*workers-1)/(tasksPerWorker*workers)))
	rowTasks := (p.m + rows - 1) / rows
	ss := scratches(workers)
	defer putScratches(ss)
	shared := getScratch() // its bp holds the packed rhs all workers read
	defer scratchPool.Put(shared)
	bp := shared.bp
	defer func() { shared.bp = bp }()
	for jc := 0; jc < p.n; jc += ncMax {
		ncur := min(ncMax, p.n-jc)
		nPanels := (ncur + nr - 1) / nr
		packTasks := min(nPanels, tasksPerWorker*workers)
		for pc := 0; pc < p.k; pc += kcMax {
			kcur := min(kcMax, p.k-pc)
			bp = grow(bp, nPanels*nr*kcur)
			spread(workers, packTasks, func(_, t int) {
				lo, hi := t*nPanels/packTasks, (t+1)*nPanels/packTasks
				if lo < hi {
					pack(bp[lo*nr*kcur:hi*nr*kcur], b, bBase, &p.b, jc+lo*nr, min(hi*nr, ncur)-lo*nr, pc, kcur, nr)
				}
			})
			spread(workers, rowTasks, func(w, t int) {
				s := ss[w]
				sbp := s.bp
				s.bp = bp
				ic := t * rows
				mcur := min(rows, p.m-ic)
				s.ap = grow(s.ap, roundUp(mcur, mr)*kcur)
				pack(s.ap, a, aBase, &p.a, ic, mcur, pc, kcur, mr)
				macro(s, c, p.n, ic, mcur, jc, ncur, kcur)
				s.bp = sbp
			})
		}
	}
}

func roundUp(x, m int) int { return (x + m - 1) / m * m }

// macro multiplies the packed blocks s.ap (mcur×kcur) and s.bp (kcur×ncur) into
// c[ic:ic+mcur, jc:jc+ncur] (row stride ldc).
func macro(s *scratch, c []float32, ldc, ic, mcur, jc, ncur, kcur int) {
	for jr := 0; jr < ncur; jr += nr {
		nrHere := min(nr, ncur-jr)
		bpan := s.bp[jr*kcur : (jr+nr)*kcur]
		for ir := 0; ir < mcur; ir += mr {
			mrHere := min(mr, mcur-ir)
			apan := s.ap[ir*kcur : (ir+mr)*kcur]
			off := (ic+ir)*ldc + jc + jr
			if mrHere == mr && nrHere == nr {
				_ = c[off+(mr-1)*ldc+nr-1]
				kernel(kcur, apan, bpan, c[off:], ldc)
				continue
			}
			t := &s.tile
			clear(t[:])
			kernel(kcur, apan, bpan, t[:], nr)
			for r := range mrHere {
				row := c[off+r*ldc : off+r*ldc+nrHere]
				for j := range row {
					row[j] += t[r*nr+j]
				}
			}
		}
	}
}

// pack copies rows [i0, i0+icur) × contracting [k0, k0+kcur) of an operand into panels of w rows:
// dst[(panel·kcur + k)·w + r], zero-padding the last panel.
func pack(dst, src []float32, base int, ax *axis2, i0, icur, k0, kcur, w int) {
	for p := 0; p*w < icur; p++ {
		d := dst[p*kcur*w : (p+1)*kcur*w]
		r0 := i0 + p*w
		here := min(w, icur-p*w)
		switch {
		case ax.rowsContig:
			rb := base + ax.rows[r0]
			cols := ax.cols[k0 : k0+kcur]
			switch {
			case here == mr && w == mr:
				for k, co := range cols {
					// Element by element: an array copy here compiles to a memmove call.
					dd, ss := (*[mr]float32)(d[k*mr:]), (*[mr]float32)(src[rb+co:])
					dd[0], dd[1], dd[2], dd[3], dd[4], dd[5] = ss[0], ss[1], ss[2], ss[3], ss[4], ss[5]
				}
			case here == nr && w == nr:
				for k, co := range cols {
					dd, ss := (*[nr]float32)(d[k*nr:]), (*[nr]float32)(src[rb+co:])
					dd[0], dd[1], dd[2], dd[3], dd[4], dd[5], dd[6], dd[7] = ss[0], ss[1], ss[2], ss[3], ss[4], ss[5], ss[6], ss[7]
					dd[8], dd[9], dd[10], dd[11], dd[12], dd[13], dd[14], dd[15] = ss[8], ss[9], ss[10], ss[11], ss[12], ss[13], ss[14], ss[15]
				}
			default:
				for k, co := range cols {
					dk := d[k*w : k*w+w]
					copy(dk, src[rb+co:rb+co+here])
					clear(dk[here:])
				}
			}
			continue
		case ax.colsContig:
			r := 0
			for ; r+4 <= here; r += 4 {
				c0 := base + ax.cols[k0]
				s0 := src[c0+ax.rows[r0+r] : c0+ax.rows[r0+r]+kcur]
				s1 := src[c0+ax.rows[r0+r+1] : c0+ax.rows[r0+r+1]+kcur]
				s2 := src[c0+ax.rows[r0+r+2] : c0+ax.rows[r0+r+2]+kcur]
				s3 := src[c0+ax.rows[r0+r+3] : c0+ax.rows[r0+r+3]+kcur]
				s1, s2, s3 = s1[:len(s0)], s2[:len(s0)], s3[:len(s0)]
				for k := range s0 {
					dd := (*[4]float32)(d[k*w+r:])
					dd[0], dd[1], dd[2], dd[3] = s0[k], s1[k], s2[k], s3[k]
				}
			}
			for ; r < here; r++ {
				ro := base + ax.rows[r0+r] + ax.cols[k0]
				srow := src[ro : ro+kcur]
				for k, v := range srow {
					d[k*w+r] = v
				}
			}
		default:
			cols := ax.cols[k0 : k0+kcur]
			for r := range here {
				ro := base + ax.rows[r0+r]
				for k, co := range cols {
					d[k*w+r] = src[ro+co]
				}
			}
		}
		if here < w {
			for k := range kcur {
				clear(d[k*w+here : k*w+w])
			}
		}
	}
}

// kernelGo is the portable micro-kernel: c[mr×nr] (row stride ldc) += Σ_k a[k·mr+r]·b[k·nr+j].
func kernelGo(kc int, a, b, c []float32, ldc int) {
	var acc [mr][nr]float32
	a = a[:kc*mr]
	b = b[:kc*nr]
	for k := range kc {
		bk := (*[nr]float32)(b[k*nr : k*nr+nr])
		ak := (*[mr]float32)(a[k*mr : k*mr+mr])
		for r := range mr {
			av := ak[r]
			accr := &acc[r]
			for j := range nr {
				accr[j] += av * bk[j]
			}
		}
	}
	for r := range mr {
		row := c[r*ldc : r*ldc+nr]
		for j := range nr {
			row[j] += acc[r][j]
		}
	}
}
