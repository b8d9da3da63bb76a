package datadir

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/lm"
)

// MaxInfluenceTopK bounds the training tokens an influence answer lists per ranking.
const MaxInfluenceTopK = 1000

// influenceCacheSize is how many influence runs a Dir remembers: each costs a replay of the
// whole run, and its scores are one float64 per training token.
const influenceCacheSize = 16

// InfluenceToken is one training token of an influence answer.
type InfluenceToken struct {
	Step    int     `json:"step"`
	Row     int     `json:"row"`
	Pos     int     `json:"pos"`
	Offset  int64   `json:"offset"`  // corpus offset (in characters) of the target
	Context string  `json:"context"` // the context window the model saw
	Target  string  `json:"target"`  // the character it was trained to predict
	Score   float64 `json:"score"`   // ∂L_query/∂ε of its loss weight ε
	// DeltaLoss is the first-order change of the query's loss had it not been trained on:
	// its weight goes from 1 to 0, so −Score.
	DeltaLoss float64 `json:"delta_loss"`
}

// InfluenceAnswer is the exact influence of every training token up to Step on one
// prediction (the metagradient through the recorded run), ranked three ways.
type InfluenceAnswer struct {
	Step      int     `json:"step"`
	Text      string  `json:"text"`
	Position  int     `json:"position"`
	Token     string  `json:"token"` // the character at Position
	Loss      float64 `json:"loss"`  // −log p(token) after the replayed run
	Prob      float64 `json:"prob"`
	Snapshots []int   `json:"snapshots"` // the checkpoints the run was replayed from
	Scored    int     `json:"scored"`    // training tokens scored
	// Top are the k tokens of largest |Score|; Supporting the k of most negative Score
	// (removing them raises the loss most: they taught this prediction); Opposing the k
	// of most positive Score (removing them lowers the loss most).
	Top        []InfluenceToken `json:"top"`
	Supporting []InfluenceToken `json:"supporting"`
	Opposing   []InfluenceToken `json:"opposing"`
	// The predicted Δloss of removing all of Top, Supporting or Opposing at once: −Σ Score
	// (first order, so the sum of their own).
	DeltaLossTop        float64 `json:"delta_loss_top"`
	DeltaLossSupporting float64 `json:"delta_loss_supporting"`
	DeltaLossOpposing   float64 `json:"delta_loss_opposing"`
	Seconds             float64 `json:"seconds"` // the run's wall time (0 when Cached)
	Cached              bool    `json:"cached"`
}

// influenceKey names one influence run.
type influenceKey struct {
	step     int
	text     string
	position int
}

// influenceRun is one cached run: the scores and corpus offsets of every training token,
// step-major.
type influenceRun struct {
	key       influenceKey
	scores    []float64
	offsets   []int64
	loss      float64
	snapshots []int
	seconds   float64
}

// influenceCache holds the influenceCacheSize most recently used runs; its zero value is empty.
type influenceCache struct {
	once sync.Once
	lru  *lru.Cache[influenceKey, *influenceRun]
}

func (c *influenceCache) runs() *lru.Cache[influenceKey, *influenceRun] {
	c.once.Do(func() { c.lru, _ = lru.New[influenceKey, *influenceRun](influenceCacheSize) }) // errors only for size ≤ 0
	return c.lru
}

func (c *influenceCache) get(k influenceKey) *influenceRun {
	r, _ := c.runs().Get(k)
	return r
}

func (c *influenceCache) put(r *influenceRun) { c.runs().Add(r.key, r) }

// Influence answers "which training tokens made the model at step predict text[position]
// as it does?" exactly: the derivative of that token's loss after step with respect to the
// loss weight of every training token of steps 1 … step, through every SGD step, replayed
// from the kept checkpoints. step must be a kept checkpoint's or the last committed one.
// It lists the topK tokens of each ranking; runs are cached per (step, text, position).
// progress (may be nil) is called after each step replayed or reversed; cancelling ctx
// stops the run.
func (d *Dir) Influence(ctx context.Context, step int, text string, position int, topK int,
	progress func(done, total int)) (*InfluenceAnswer, error) {
	q, err := d.influenceQuestion(step, text, position, topK)
	if err != nil {
		return nil, err
	}
	if run := d.influence.get(q.key); run != nil {
		return d.influenceAnswer(run, q.token, topK, true), nil
	}
	run, err := d.runInfluence(ctx, q.key, q.contexts, q.target, progress)
	if err != nil {
		return nil, err
	}
	d.influence.put(run)
	return d.influenceAnswer(run, q.token, topK, false), nil
}

// CachedInfluence is Influence answered from the cache alone: nil when that run is not
// cached (it never replays anything). Bad input fails as it does in Influence.
func (d *Dir) CachedInfluence(step int, text string, position int, topK int) (*InfluenceAnswer, error) {
	q, err := d.influenceQuestion(step, text, position, topK)
	if err != nil {
		return nil, err
	}
	if run := d.influence.get(q.key); run != nil {
		return d.influenceAnswer(run, q.token, topK, true), nil
	}
	return nil, nil
}

// influenceQuestion is a validated influence question.
type influenceQuestion struct {
	key      influenceKey
	contexts []int32
	target   int32
	token    string
}

func (d *Dir) influenceQuestion(step int, text string, position int, topK int) (*influenceQuestion, error) {
	if topK < 1 || topK > MaxInfluenceTopK {
		return nil, fmt.Errorf("%w: top k %d outside 1..%d", ErrRetrainInput, topK, MaxInfluenceTopK)
	}
	tok, err := lm.NewTokenizer(string(d.Corpus()))
	if err != nil {
		return nil, err
	}
	contexts, target, err := Target(tok, text, position)
	if err != nil {
		return nil, err
	}
	return &influenceQuestion{influenceKey{step, text, position}, contexts, target, tok.DecodeOne(target)}, nil
}

// runInfluence replays the run to key.step from its snapshots and scores every token.
func (d *Dir) runInfluence(ctx context.Context, key influenceKey, contexts []int32, target int32,
	progress func(done, total int)) (*influenceRun, error) {
	start := time.Now()
	snaps, err := d.influenceSnapshots(key.step)
	if err != nil {
		return nil, err
	}
	tr, err := lm.ResumeTrainer(snaps[key.step], string(d.Corpus()))
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	res, err := tr.InfluenceRun(ctx, [][]int32{contexts}, []int32{target}, snaps, lm.InfluenceOptions{Progress: progress})
	if err != nil {
		return nil, err
	}
	r := &influenceRun{key: key, scores: res.Scores[0], loss: res.QueryLoss[0]}
	for s := res.From + 1; s <= res.To; s++ {
		r.offsets = append(r.offsets, tr.BatchAt(s).Offsets...)
	}
	r.seconds = time.Since(start).Seconds()
	for s := range snaps {
		r.snapshots = append(r.snapshots, s)
	}
	slices.Sort(r.snapshots)
	return r, nil
}

// influenceSnapshots are the checkpoints from step 0 to step, keyed by their steps: every
// kept one before step, and step's own (kept, or the last committed). A directory written
// before checkpoints were kept gets its step 0 rebuilt from the config, as trainerAt does.
func (d *Dir) influenceSnapshots(step int) (map[int][]byte, error) {
	last := d.Steps()
	if step < 1 || step > last {
		return nil, fmt.Errorf("%w: step %d is not committed (1..%d)", ErrRetrainInput, step, last)
	}
	kept, err := d.Store.KeptCheckpoints()
	if err != nil {
		return nil, err
	}
	snaps := map[int][]byte{}
	for _, k := range kept {
		if k.Step > step {
			break
		}
		at, ck, err := d.Store.CheckpointAt(k.Step)
		if err != nil {
			return nil, err
		}
		snaps[at] = ck
	}
	if _, ok := snaps[step]; !ok {
		if step != last {
			return nil, fmt.Errorf("%w: step %d has no checkpoint: ask about a kept one (%s) or the last, %d",
				ErrRetrainInput, step, keptList(kept), last)
		}
		at, ck, err := d.Store.Checkpoint()
		if err != nil {
			return nil, err
		}
		snaps[at] = ck
	}
	if _, ok := snaps[0]; !ok {
		_, ck, err := d.keptCheckpoint(0)
		if err != nil {
			return nil, err
		}
		snaps[0] = ck
	}
	return snaps, nil
}

func keptList(kept []dualmem.KeptCheckpoint) string {
	steps := make([]string, len(kept))
	for i, k := range kept {
		steps[i] = strconv.Itoa(k.Step)
	}
	return strings.Join(steps, ", ")
}

// influenceAnswer ranks a run's scores and describes the topK tokens of each ranking.
func (d *Dir) influenceAnswer(r *influenceRun, token string, topK int, cached bool) *InfluenceAnswer {
	a := &InfluenceAnswer{Step: r.key.step, Text: r.key.text, Position: r.key.position, Token: token,
		Loss: r.loss, Prob: math.Exp(-r.loss), Snapshots: r.snapshots, Scored: len(r.scores), Cached: cached}
	if !cached {
		a.Seconds = r.seconds
	}
	corpus := []rune(string(d.Corpus()))
	perStep := d.Cfg.Batch * d.Cfg.Ctx
	describe := func(idx []int) ([]InfluenceToken, float64) {
		out, sum := make([]InfluenceToken, 0, len(idx)), 0.0
		for _, i := range idx {
			j := i % perStep
			t := InfluenceToken{Step: i/perStep + 1, Row: j / d.Cfg.Ctx, Pos: j % d.Cfg.Ctx, Offset: r.offsets[i],
				Score: r.scores[i], DeltaLoss: -r.scores[i]}
			if off := int(t.Offset); off >= 0 && off < len(corpus) {
				t.Context, t.Target = string(corpus[max(0, off-t.Pos-1):off]), string(corpus[off])
			}
			out = append(out, t)
			sum -= r.scores[i]
		}
		return out, sum
	}
	a.Top, a.DeltaLossTop = describe(topIndices(r.scores, topK, math.Abs))
	a.Supporting, a.DeltaLossSupporting = describe(topIndices(r.scores, topK, func(x float64) float64 { return -x }))
	a.Opposing, a.DeltaLossOpposing = describe(topIndices(r.scores, topK, func(x float64) float64 { return x }))
	return a
}

// topIndices are the indices of the k largest key(scores[i]), largest first (ties by index).
func topIndices(scores []float64, k int, key func(float64) float64) []int {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		ka, kb := key(scores[a]), key(scores[b])
		switch {
		case ka > kb:
			return -1
		case ka < kb:
			return 1
		}
		return 0
	})
	return idx[:min(k, len(idx))]
}
