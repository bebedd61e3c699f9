// Package iox holds small io helpers shared by the runner and the supervisor.
package iox

import (
	"strings"
	"sync"
)

// TailBuffer is an io.Writer that keeps only the last n bytes written to it:
// a child process's stderr, kept for an error message. It is safe for
// concurrent use.
type TailBuffer struct {
	mu  sync.Mutex
	n   int
	buf []byte
}

// NewTailBuffer keeps the last n bytes.
func NewTailBuffer(n int) *TailBuffer { return &TailBuffer{n: n} }

func (t *TailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.n {
		t.buf = t.buf[len(t.buf)-t.n:]
	}
	return len(p), nil
}

// String is what is kept, without surrounding white space.
func (t *TailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

// LastLine is the last non-empty line written.
func (t *TailBuffer) LastLine() string {
	s := t.String()
	return strings.TrimSpace(s[strings.LastIndexByte(s, '\n')+1:])
}
