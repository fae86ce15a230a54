package main

import (
	"bytes"
	"sync"
)

// syncWriter is a bytes.Buffer safe for the concurrent writes of a logger.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer // guarded by mu
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
