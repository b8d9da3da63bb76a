package api_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLoad is the load generator of .ci/load.sh, run against a `spotlight serve` outside
// the test: SPOTLIGHT_LOAD_URL is its address, SPOTLIGHT_LOAD_PID its process (for RSS),
// SPOTLIGHT_LOAD_CLIENTS and SPOTLIGHT_LOAD_SECONDS the load, SPOTLIGHT_LOAD_MAX_RSS_MIB
// the bound on its resident memory. Clients loop over a mix of every query endpoint and
// two slow readers hang on large answers; any status but the expected one or 429 fails,
// as does the server's RSS going over the bound. Without SPOTLIGHT_LOAD_URL it is skipped.
func TestLoad(t *testing.T) {
	base := os.Getenv("SPOTLIGHT_LOAD_URL")
	if base == "" {
		t.Skip("SPOTLIGHT_LOAD_URL is not set (.ci/load.sh sets it)")
	}
	pid, clients, seconds, maxRSS := envInt(t, "SPOTLIGHT_LOAD_PID", 0), envInt(t, "SPOTLIGHT_LOAD_CLIENTS", 20),
		envInt(t, "SPOTLIGHT_LOAD_SECONDS", 20), envInt(t, "SPOTLIGHT_LOAD_MAX_RSS_MIB", 0)
	mix := []struct {
		method, path, body string
		want               int
	}{
		{"POST", "/v1/generate", `{"prompt":"The light","tokens":4,"top_k":3}`, 200},
		{"POST", "/v1/attribute", `{"text":"The light of the","top_k":5,"rank_by":"margin"}`, 200},
		{"POST", "/v1/generate", `{"prompt":"The light","tokens":1024,"top_k":1000,"bins":1000}`, 422},
		{"GET", "/v1/plots/timeline.svg?prompt=The&token=1", "", 200},
		{"GET", "/v1/steps/3", "", 200},
		{"GET", "/v1/model", "", 200},
	}
	s := &testServer{base: base}
	for range 2 {
		slowReader(t, s, "/v1/generate", `{"prompt":"The light","tokens":32,"top_k":1000}`)
	}
	var (
		mu     sync.Mutex
		counts = map[string]int{}
		wg     sync.WaitGroup
	)
	stop := time.Now().Add(time.Duration(seconds) * time.Second)
	client := &http.Client{Timeout: 90 * time.Second}
	for c := range clients {
		wg.Go(func() {
			for i := c; time.Now().Before(stop); i++ {
				m := mix[i%len(mix)]
				req, _ := http.NewRequest(m.method, base+m.path, strings.NewReader(m.body))
				req.Header.Set("Content-Type", "application/json")
				status := "error"
				if resp, err := client.Do(req); err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if status = strconv.Itoa(resp.StatusCode); err != nil {
						status += " (body cut)"
					}
				}
				mu.Lock()
				counts[m.method+" "+strings.SplitN(m.path, "?", 2)[0]+" "+status]++
				if status != strconv.Itoa(m.want) && status != "429" {
					t.Errorf("%s %s: %s, want %d", m.method, m.path, status, m.want)
				}
				mu.Unlock()
			}
		})
	}
	peak := 0
	for time.Now().Before(stop) {
		if pid > 0 {
			peak = max(peak, rssMiB(t, pid))
		}
		time.Sleep(200 * time.Millisecond)
	}
	wg.Wait()
	t.Logf("%d clients × %d s: %v; server peak RSS %d MiB (bound %d)", clients, seconds, counts, peak, maxRSS)
	if maxRSS > 0 && peak > maxRSS {
		t.Errorf("server RSS peaked at %d MiB, over the bound of %d MiB", peak, maxRSS)
	}
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

// rssMiB reads a process's resident set size from /proc.
func rssMiB(t *testing.T, pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading the server's RSS: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return kb >> 10
		}
	}
	return 0
}
