package gomlxpatch

import (
	"bufio"
	"bytes"
	"errors"
	"log/slog"
	"os"
	"reflect"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/simplego"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// TestPinMatchesGoMod fails when go.mod requires another GoMLX than the one the patches were
// written against (and the test binary's build information agrees with go.mod).
func TestPinMatchesGoMod(t *testing.T) {
	f, err := os.Open("../../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var required string
	for sc := bufio.NewScanner(f); sc.Scan(); {
		fields := strings.Fields(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "require "))
		if len(fields) >= 2 && fields[0] == gomlxModule {
			required = fields[1]
		}
	}
	if required != PinnedVersion {
		t.Errorf("go.mod requires %s %q, the patches are pinned to %s: re-check every patch against the new "+
			"version's source, then move PinnedVersion", gomlxModule, required, PinnedVersion)
	}
	if err := checkVersion(debug.ReadBuildInfo()); err != nil {
		t.Errorf("build information: %v", err)
	}
}

func TestCheckVersion(t *testing.T) {
	dep := func(v string, replace *debug.Module) *debug.BuildInfo {
		return &debug.BuildInfo{Deps: []*debug.Module{{Path: "golang.org/x/sys", Version: "v0.1.0"},
			{Path: gomlxModule, Version: v, Replace: replace}}}
	}
	for _, c := range []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		fail bool
	}{
		{"pinned", dep(PinnedVersion, nil), true, false},
		{"newer", dep("v0.27.0", nil), true, true},
		{"replaced by a local copy", dep(PinnedVersion, &debug.Module{Path: "../gomlx"}), true, true},
		{"replaced by the pinned version", dep("v0.25.0", &debug.Module{Path: gomlxModule, Version: PinnedVersion}), true, false},
		{"no build information", nil, false, false},
	} {
		err := checkVersion(c.bi, c.ok)
		if (err != nil) != c.fail {
			t.Errorf("%s: err = %v, want failure %v", c.name, err, c.fail)
		}
		if err != nil && !strings.Contains(err.Error(), PinnedVersion) {
			t.Errorf("%s: error does not name the pin: %v", c.name, err)
		}
	}
}

// captureLog runs f with the default slog logger writing to a buffer.
func captureLog(t *testing.T, f func()) string {
	t.Helper()
	var buf bytes.Buffer
	saved := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	defer slog.SetDefault(saved)
	f()
	return buf.String()
}

// A version mismatch, a failing self-test or a wrong gradient leaves GoMLX's VJP registered
// and logs one warning naming the patch; nothing panics.
func TestVJPPatchFallsBack(t *testing.T) {
	backend := gomlxBackendForTest(t)
	registered := graph.VJPRegistration[graph.NodeTypeDotGeneral]
	fnPtr := func(f graph.VJP) uintptr { return reflect.ValueOf(f).Pointer() }
	never := func(*graph.Node, []*graph.Node, shapes.Shape) []*graph.Node { panic("must not be registered") }
	for _, c := range []struct {
		name     string
		verr     error
		selfTest func() error
	}{
		{"version", errors.New("gomlx is v9.9.9"), func() error { return nil }},
		{"self-test", nil, func() error { return errors.New("gradients differ") }},
		{"wrong-gradient", nil, func() error {
			corruptVJPForTest = true
			defer func() { corruptVJPForTest = false }()
			return dotGeneralVJPSelfTest(backend)
		}},
	} {
		patch := "test-" + c.name
		var on bool
		logged := captureLog(t, func() {
			for range 2 {
				on = installVJP(vjpPatch{patch, graph.NodeTypeDotGeneral, never,
					func(backends.Backend) error { return c.selfTest() }}, backend, c.verr)
			}
		})
		if on {
			t.Errorf("%s: patch installed", c.name)
		}
		if fnPtr(graph.VJPRegistration[graph.NodeTypeDotGeneral]) != fnPtr(registered) {
			graph.VJPRegistration[graph.NodeTypeDotGeneral] = registered
			t.Fatalf("%s: registry changed", c.name)
		}
		if n := strings.Count(logged, "level=WARN"); n != 1 || !strings.Contains(logged, "patch="+patch) {
			t.Errorf("%s: want one warning naming %s, got %q", c.name, patch, logged)
		}
		t.Logf("%s: %s", c.name, strings.TrimSpace(logged))
	}
}

func TestTakeParallelism(t *testing.T) {
	for _, c := range []struct {
		opts, rest string
		n          int
		ok         bool
	}{
		{"parallelism=-1", "", -1, true},
		{"ops_sequential,parallelism=3,dotgeneral_small", "ops_sequential,dotgeneral_small", 3, true},
		{"parallelism=2,parallelism=5", "", 5, true},
		{"ops_sequential", "", 0, false},
		{"parallelism=many", "", 0, false},
		{"", "", 0, false},
	} {
		rest, n, ok := takeParallelism(c.opts)
		if ok != c.ok || (ok && (rest != c.rest || n != c.n)) {
			t.Errorf("takeParallelism(%q) = %q, %d, %v; want %q, %d, %v", c.opts, rest, n, ok, c.rest, c.n, c.ok)
		}
	}
}

// parallelism=N reaches the worker pool without simplego's own parsing; bad values still get
// simplego's error.
func TestNewBackendParallelism(t *testing.T) {
	for _, c := range []struct {
		config string
		quiet  bool
		want   int
	}{
		{"go:parallelism=-1", true, -1},
		{"go:ops_sequential,parallelism=3", true, 3},
		{"go:parallelism=0", true, 0},
	} {
		b, quiet, err := newBackend(c.config)
		if err != nil {
			t.Fatalf("%s: %v", c.config, err)
		}
		field, err := parallelismField(b.(*simplego.Backend))
		if err != nil {
			t.Fatal(err)
		}
		if quiet != c.quiet || *field != c.want {
			t.Errorf("%s: quiet %v, parallelism %d; want %v, %d", c.config, quiet, *field, c.quiet, c.want)
		}
		b.Finalize()
	}
	// Without the option the pool keeps simplego's default (one slot per CPU).
	b, quiet, err := newBackend("go")
	if err != nil || quiet {
		t.Fatalf("go: quiet %v, err %v", quiet, err)
	}
	b.Finalize()
	for _, bad := range []string{"go:parallelism=x", "no-such-backend", "go:no_such_option,parallelism=1"} {
		if _, _, err := newBackend(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
