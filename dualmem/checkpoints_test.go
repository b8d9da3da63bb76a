package dualmem

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func blobOf(step int) []byte { return fmt.Appendf(nil, "checkpoint of step %d", step) }

// commitEvery appends steps from+1..to and commits every `every` of them.
func commitEvery(t *testing.T, s *Store, from, to, every int, rng *rand.Rand) {
	t.Helper()
	for st := from + 1; st <= to; st++ {
		if err := s.AppendStep(makeStep(s.meta, st, 2, 3, rng)); err != nil {
			t.Fatal(err)
		}
		if st%every == 0 || st == to {
			if err := s.Commit(st, blobOf(st)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func keptSteps(t *testing.T, s *Store) []int {
	t.Helper()
	ks, err := s.KeptCheckpoints()
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, k := range ks {
		if k.Bytes <= 0 {
			t.Errorf("kept checkpoint %d has %d bytes", k.Step, k.Bytes)
		}
		out = append(out, k.Step)
	}
	return out
}

func TestKeptCheckpoints(t *testing.T) {
	for _, tc := range []struct {
		name            string
		keep, every, to int
		want            []int
		at              map[int]int // CheckpointAt(step) → step of the checkpoint
	}{
		{"aligned", 4, 2, 10, []int{0, 4, 8}, map[int]int{0: 0, 3: 0, 4: 4, 7: 4, 9: 8, 10: 10, 99: 10}},
		{"unaligned", 5, 3, 15, []int{0, 6, 12, 15}, map[int]int{5: 0, 6: 6, 11: 6, 14: 12, 15: 15}},
		{"none", 0, 2, 6, []int{0}, map[int]int{5: 0, 6: 6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			dir := t.TempDir()
			s, err := Create(dir, testMeta(F32), []byte("to be or not to be"), testInitial(testMeta(F32), rng), blobOf(0))
			if err != nil {
				t.Fatal(err)
			}
			s.SetKeepEvery(tc.keep)
			half := tc.to / 2 / tc.every * tc.every
			commitEvery(t, s, 0, half, tc.every, rng)
			// Reopening keeps the retention's place.
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if s, err = Open(dir); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			s.SetKeepEvery(tc.keep)
			commitEvery(t, s, half, tc.to, tc.every, rng)
			if got := keptSteps(t, s); !slices.Equal(got, tc.want) {
				t.Errorf("kept %v, want %v", got, tc.want)
			}
			for step, want := range tc.at {
				at, blob, err := s.CheckpointAt(step)
				if err != nil || at != want || string(blob) != string(blobOf(want)) {
					t.Errorf("CheckpointAt(%d) = %d %q %v, want %d", step, at, blob, err, want)
				}
			}
			sizes, err := s.Sizes()
			if err != nil || sizes[SizeKept] <= 0 {
				t.Errorf("kept size %d, %v", sizes[SizeKept], err)
			}
		})
	}
}

// A directory written before checkpoints were kept has only its last one.
func TestCheckpointAtWithoutKept(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := mustCreate(t, t.TempDir(), testMeta(F32), rng)
	defer s.Close()
	s.SetKeepEvery(0)
	commitEvery(t, s, 0, 4, 2, rng)
	if at, _, err := s.CheckpointAt(4); err != nil || at != 4 {
		t.Errorf("CheckpointAt(4) = %d, %v", at, err)
	}
	if _, _, err := s.CheckpointAt(3); !errors.Is(err, ErrNotFound) {
		t.Errorf("CheckpointAt(3): %v, want ErrNotFound", err)
	}
	if _, _, err := s.CheckpointAt(-1); !errors.Is(err, ErrNotFound) {
		t.Errorf("CheckpointAt(-1): %v, want ErrNotFound", err)
	}
}
