package gitstate

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tether-dev/tether/internal/gitstate/gittest"
)

// fuzzSeeds captures a few of gittest's cases (an operation in progress,
// stash, config, submodules, sha256) and returns their States as JSON and
// the first bytes of their bundles: real input for the decoders.
func fuzzSeeds(f *testing.F) (states, bundles [][]byte) {
	f.Helper()
	want := map[string]bool{"ordinary": true, "merge-conflict": true, "rebase-merge": true, "local-config": true,
		"credentials": true, "submodule": true, "sha256": true, "intent-to-add": true, "bisect": true}
	for _, c := range gittest.Cases() {
		if !want[c.Name] {
			continue
		}
		dir := filepath.Join(f.TempDir(), c.Name)
		for _, step := range c.Steps {
			step(f, dir)
		}
		objs, scratch := filepath.Join(f.TempDir(), "objects"), filepath.Join(f.TempDir(), "scratch")
		res, err := Capture(context.Background(), dir, nil, CaptureOptions{ObjectDir: objs, ScratchDir: scratch})
		if err != nil {
			f.Fatal(err)
		}
		js, err := json.Marshal(res.State)
		if err != nil {
			f.Fatal(err)
		}
		states = append(states, js)
		if b, err := os.ReadFile(res.Bundle); err == nil {
			if len(b) > 4096 {
				b = b[:4096]
			}
			bundles = append(bundles, b)
		}
	}
	return states, bundles
}

// FuzzDecodeState decodes a State as a snapshot's manifest carries it and
// runs every check restore makes before git runs: none may panic, a State
// that passes Validate holds only ids, refs and paths git could have
// written, and the config restore would write is allowed and free of
// credentials however often it is cleaned.
func FuzzDecodeState(f *testing.F) {
	states, _ := fuzzSeeds(f)
	for _, s := range states {
		f.Add(s)
	}
	f.Add([]byte(`{"version":1,"config":[{"key":"filter.x.smudge","value":"sh -c 'id'"},{"key":"Remote.o.URL","value":"https://u:p@h/x?token=1"}]}`))
	f.Add([]byte(`{"version":1,"object_format":"sha256","refs":[{"name":"refs/heads/x","target":"--stdin"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var st State
		if err := json.Unmarshal(data, &st); err != nil {
			return
		}
		unsafe := st.UnsafeConfig()
		for _, k := range unsafe {
			if len(k) > maxKeyInMessage+len("…") {
				t.Fatalf("unbounded key in a message: %d bytes", len(k))
			}
		}
		for _, c := range st.Config {
			key, _, _, _, ok := canonicalKey(c.Key)
			if !ok || !AllowedConfig(key, c.Value) {
				continue
			}
			v := CleanConfigValue(c.Value)
			if CleanConfigValue(v) != v {
				t.Fatalf("cleaning %q is not stable: %q then %q", c.Value, v, CleanConfigValue(v))
			}
			if !AllowedConfig(key, v) {
				t.Fatalf("%s=%q is allowed but its cleaned value %q is not", key, c.Value, v)
			}
			if k2, _, _, _, ok := canonicalKey(key); !ok || k2 != key {
				t.Fatalf("canonical key %q is not canonical: %q %v", key, k2, ok)
			}
		}
		if err := st.Validate(); err != nil {
			return
		}
		n := 40
		if st.ObjectFormat == "sha256" {
			n = 64
		}
		for _, id := range []string{st.Snapshot, st.WorktreeTree, st.StagedTree} {
			if len(id) != n || !isHex(id) {
				t.Fatalf("Validate passed the object id %q", id)
			}
		}
		for _, r := range st.Refs {
			if strings.ContainsAny(r.Name+r.Target+r.Symref, " \n\x00") || strings.HasPrefix(r.Target, "-") {
				t.Fatalf("Validate passed the ref %+v", r)
			}
		}
		for _, p := range st.IntentToAdd {
			if strings.HasPrefix(p, "/") || strings.HasPrefix(p, "../") || strings.HasPrefix(p, ".git/") {
				t.Fatalf("Validate passed the path %q", p)
			}
		}
	})
}

// FuzzBundleHeader parses bundle headers: no panic, no line longer than the
// bound kept, and every id returned is a full hex id of the format.
func FuzzBundleHeader(f *testing.F) {
	_, bundles := fuzzSeeds(f)
	for _, b := range bundles {
		f.Add(b, false)
	}
	f.Add([]byte("# v3 git bundle\n@object-format=sha256\n@filter=blob:none\n\n"), true)
	f.Add([]byte("# v2 git bundle\n-"+strings.Repeat("a", 40)+" subject\n"+strings.Repeat("b", 40)+" refs/heads/main\n\nPACK"), false)
	f.Fuzz(func(t *testing.T, data []byte, sha256 bool) {
		format, n := "sha1", 40
		if sha256 {
			format, n = "sha256", 64
		}
		h, err := readBundleHeader(bufio.NewReaderSize(bytes.NewReader(data), 64<<10), format)
		if err != nil {
			return
		}
		if len(h.tips) == 0 {
			t.Fatal("a header without refs was accepted")
		}
		for _, id := range append(append([]string{}, h.prereqs...), h.tips...) {
			if len(id) != n || !isHex(id) {
				t.Fatalf("header gave the id %q for a %s bundle", id, format)
			}
		}
	})
}
