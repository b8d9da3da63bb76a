package eval

import (
	"encoding/json"
	"math"
	"sort"

	"gonum.org/v1/gonum/stat"
)

// Num is a float that marshals NaN and ±Inf (an undefined correlation) as JSON null.
type Num float64

// MarshalJSON implements json.Marshaler.
func (n Num) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return json.Marshal(f)
}

// Pearson is the sample correlation of x and y (NaN with fewer than 2 points or no spread).
func Pearson(x, y []float64) float64 {
	if len(x) < 2 || len(x) != len(y) {
		return math.NaN()
	}
	return stat.Correlation(x, y, nil)
}

// Spearman is the Pearson correlation of the ranks, ties sharing their mean rank.
func Spearman(x, y []float64) float64 {
	if len(x) < 2 || len(x) != len(y) {
		return math.NaN()
	}
	return stat.Correlation(ranks(x), ranks(y), nil)
}

func ranks(x []float64) []float64 {
	idx := make([]int, len(x))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return x[idx[a]] < x[idx[b]] })
	r := make([]float64, len(x))
	for i := 0; i < len(idx); {
		j := i
		for j+1 < len(idx) && x[idx[j+1]] == x[idx[i]] {
			j++
		}
		mean := float64(i+j)/2 + 1
		for m := i; m <= j; m++ {
			r[idx[m]] = mean
		}
		i = j + 1
	}
	return r
}
