package iox

import "testing"

func TestTailBuffer(t *testing.T) {
	b := NewTailBuffer(13)
	b.Write([]byte("first line\nsecond\n"))
	b.Write([]byte("third  \n\n"))
	if got := b.String(); got != "ond\nthird" {
		t.Fatalf("String() = %q", got)
	}
	if got := b.LastLine(); got != "third" {
		t.Fatalf("LastLine() = %q", got)
	}
	if got := NewTailBuffer(4).LastLine(); got != "" {
		t.Fatalf("empty LastLine() = %q", got)
	}
}
