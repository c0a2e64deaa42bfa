package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress draws a bar on a terminal, or a line every few seconds elsewhere.
type progress struct {
	w     io.Writer
	label string
	tty   bool
	mu    sync.Mutex
	last  time.Time
	start time.Time
	done  bool
	n, of int
}

func newProgress(w io.Writer, label string) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, label: label, tty: tty, start: time.Now()}
}

// Set reports n of total done.
func (p *progress) Set(n, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n, p.of = n, total
	every := 2 * time.Second
	if p.tty {
		every = 100 * time.Millisecond
	}
	if time.Since(p.last) < every && n < total {
		return
	}
	p.last = time.Now()
	p.draw()
}

func (p *progress) draw() {
	frac := 0.0
	if p.of > 0 {
		frac = float64(p.n) / float64(p.of)
	}
	rate := float64(p.n) / max(time.Since(p.start).Seconds(), 1e-3)
	if p.tty {
		const width = 30
		fill := int(frac * width)
		fmt.Fprintf(p.w, "\r%s [%s%s] %3.0f%% %d/%d %.0f/s", p.label, strings.Repeat("█", fill), strings.Repeat("░", width-fill), frac*100, p.n, p.of, rate)
	} else {
		fmt.Fprintf(p.w, "%s %d/%d (%.0f%%, %.0f/s)\n", p.label, p.n, p.of, frac*100, rate)
	}
}

// Done ends the bar.
func (p *progress) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return
	}
	p.done = true
	p.draw()
	if p.tty {
		fmt.Fprintln(p.w)
	}
}
