package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
)

// logEvery is how often a long job logs its progress when stderr is not a terminal.
const logEvery = 5 * time.Second

// progress reports a long job on stderr: a bar on a terminal; otherwise log lines (a start
// line, events, and the count every logEvery), since a pipe or file would otherwise get
// thousands of carriage-return frames.
type progress struct {
	what  string
	total int
	bar   *progressbar.ProgressBar // nil when stderr is not a terminal
	log   *slog.Logger
	last  time.Time
}

// newProgress starts reporting a job of total units; log (nil: a text logger on stderr)
// takes the lines when stderr is not a terminal.
func newProgress(log *slog.Logger, what string, total int) *progress {
	return newProgressOn(os.Stderr, isTTY(os.Stderr), log, what, total)
}

// newProgressOn is newProgress on w, a terminal when tty.
func newProgressOn(w io.Writer, tty bool, log *slog.Logger, what string, total int) *progress {
	p := &progress{what: what, total: total, log: log, last: time.Now()}
	if tty {
		p.bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription(what), progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionClearOnFinish())
		return p
	}
	if p.log == nil {
		p.log = slog.New(slog.NewTextHandler(w, nil))
	}
	return p
}

// Set reports done units; attrs are key, value pairs shown after the count.
func (p *progress) Set(done int, attrs ...any) {
	if p.bar != nil {
		// The count first: each call draws a frame (throttled), and the count is what the
		// frame must get right.
		_ = p.bar.Set(done)
		p.bar.Describe(describe(p.what, attrs))
		return
	}
	if time.Since(p.last) >= logEvery {
		p.last = time.Now()
		p.log.Info(p.what, append([]any{"done", done, "of", p.total}, attrs...)...)
	}
}

// Restart reports a new job on the same reporter (a bar starts over).
func (p *progress) Restart(what string, total int) {
	p.what, p.total = what, total
	if p.bar != nil {
		p.bar.Reset()
		p.bar.ChangeMax(total)
		return
	}
	p.Event(what, "of", total)
}

// Event logs one line at once when stderr is not a terminal (the bar already shows it).
func (p *progress) Event(msg string, attrs ...any) {
	if p.bar == nil {
		p.log.Info(msg, attrs...)
	}
}

// Finish clears the bar.
func (p *progress) Finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}

func describe(what string, attrs []any) string {
	var b strings.Builder
	b.WriteString(what)
	for i := 0; i+1 < len(attrs); i += 2 {
		fmt.Fprintf(&b, " %v %v", attrs[i], attrs[i+1])
	}
	return b.String()
}

func isTTY(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// layerProgress reports work done per layer and step (loading or indexing a memory), one
// job per layer; finish clears the bar.
func layerProgress(log *slog.Logger, verb string) (report func(layer string, done, total int), finish func()) {
	var bar *progress
	current := ""
	report = func(layer string, done, total int) {
		switch {
		case bar == nil:
			bar = newProgress(log, verb+" "+layer, total)
			bar.Event(verb+" "+layer, "of", total)
		case layer != current:
			bar.Restart(verb+" "+layer, total)
		}
		current = layer
		bar.Set(done)
	}
	finish = func() {
		if bar != nil {
			bar.Finish()
		}
	}
	return report, finish
}
