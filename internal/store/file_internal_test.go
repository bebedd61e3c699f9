package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func openTestFile(t *testing.T) (*fileStore, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(context.Background(), "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	return s.(*fileStore), dir
}

// TestFileTempFiles checks that temp files a dead writer left behind are
// never listed, and that List removes them once they are old enough that no
// live writer can own them.
func TestFileTempFiles(t *testing.T) {
	ctx := context.Background()
	s, dir := openTestFile(t)
	if err := s.Put(ctx, "d/obj", []byte("ok")); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(dir, "d", tempMarker+"fresh")
	stale := filepath.Join(dir, "d", tempMarker+"stale")
	for _, p := range []string{fresh, stale} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := s.List(ctx, "", func(oi ObjectInfo) error { keys = append(keys, oi.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(keys, ",") != "d/obj" {
		t.Errorf("List = %v, want only d/obj", keys)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp file not removed: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temp file (a live writer's) removed: %v", err)
	}
	// A successful write leaves no temp file behind.
	if err := s.PutIfAbsent(ctx, "d/once", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutIfAbsent(ctx, "d/once", []byte("y")); !errors.Is(err, ErrExists) {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "d"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tempMarker) && e.Name() != filepath.Base(fresh) {
			t.Errorf("write left temp file %s", e.Name())
		}
	}
}

// TestFileLayout checks objects are plain files at <dir>/<prefix><key>, so
// a person can read a store with ls and cat.
func TestFileLayout(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(context.Background(), "file://"+dir+"?prefix=ns/")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(context.Background(), "a/b", []byte("content")); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "ns", "a", "b"))
	if err != nil || string(got) != "content" {
		t.Errorf("object file = %q, %v", got, err)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "ns", "a"))
	if len(ents) != 1 {
		t.Errorf("sidecar files next to the object: %v", ents)
	}
}

// TestFileKeyConflicts: a file store cannot hold both "a" and "a/b"; the
// error must say so and must not be retried as transient.
func TestFileKeyConflicts(t *testing.T) {
	ctx := context.Background()
	s, _ := openTestFile(t)
	if err := s.Put(ctx, "a", []byte("x")); err != nil {
		t.Fatal(err)
	}
	err := s.Put(ctx, "a/b", []byte("y"))
	if err == nil || !strings.Contains(err.Error(), "cannot hold keys below an object") || IsTransient(err) {
		t.Errorf("Put below an object = %v (transient %v)", err, IsTransient(err))
	}
	if err := s.Put(ctx, "c/d", []byte("y")); err != nil {
		t.Fatal(err)
	}
	for _, put := range []func(context.Context, string, []byte) error{s.Put, s.PutIfAbsent} {
		err := put(ctx, "c", []byte("z"))
		if err == nil || !strings.Contains(err.Error(), "also a directory") || IsTransient(err) || errors.Is(err, ErrExists) {
			t.Errorf("write at a directory key = %v", err)
		}
	}
	if err := s.Delete(ctx, "c"); err != nil {
		t.Errorf("Delete of a directory key = %v, want nil (no object there)", err)
	}
	if _, err := s.Get(ctx, "c/d"); err != nil {
		t.Errorf("Delete of the directory key removed what is below: %v", err)
	}
}
