package datadir

import (
	"testing"

	"github.com/spotlight-lm/spotlight/lm"
)

func TestLossCurve(t *testing.T) {
	infos := func(n int) []lm.StepInfo {
		out := make([]lm.StepInfo, n)
		for i := range out {
			out[i] = lm.StepInfo{Step: i + 1, Loss: float32(i + 1)}
		}
		return out
	}
	for _, tc := range []struct {
		name             string
		steps, points    int
		lastStep         int
		firstLoss, lastL float64
	}{
		{"Empty", 0, 0, 0, 0, 0},
		{"OnePerStep", 3, 3, 3, 1, 3},
		{"Averaged", 1000, 334, 1000, 2, 1000}, // 3 steps a point: (1+2+3)/3 = 2; the last point holds step 1000 alone
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := lossCurve(infos(tc.steps), 400)
			if len(got) != tc.points {
				t.Fatalf("%d points, want %d", len(got), tc.points)
			}
			if tc.points == 0 {
				return
			}
			if last := got[len(got)-1]; last.Step != tc.lastStep || last.Loss != tc.lastL || got[0].Loss != tc.firstLoss {
				t.Errorf("first %+v last %+v", got[0], last)
			}
		})
	}
}
