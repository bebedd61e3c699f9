package main

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"time"
)

//go:embed baseline.sh
var baselineScript []byte

// sample is one measured cycle of one method.
type sample struct {
	usage
	Uploaded int64
}

// series is the samples of one figure, with medians.
type series []sample

func (s series) cpu() time.Duration {
	return median(mapf(s, func(x sample) time.Duration { return x.CPU }))
}
func (s series) wall() time.Duration {
	return median(mapf(s, func(x sample) time.Duration { return x.Wall }))
}
func (s series) rss() int64 { return median(mapf(s, func(x sample) int64 { return x.MaxRSS })) }
func (s series) uploaded() int64 {
	return median(mapf(s, func(x sample) int64 { return x.Uploaded }))
}

func mapf[T, U any](xs []T, f func(T) U) []U {
	out := make([]U, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// env holds what every measured command needs.
type env struct {
	ws, scratch string
	tether      string // binary
	minio       *minioServer
	script      string // baseline.sh written out
	cacheDir    string // tether's stat cache, kept across saves as the sync sidecar keeps it
}

func (e *env) baselineEnv(remote string) []string {
	return append(e.minio.rcloneEnv(), "WS="+e.ws, "REMOTE="+remote)
}

// baseline runs one baseline.sh mode and counts what rclone uploaded, from
// the JSON statistics every rclone run prints at its end.
func (e *env) baseline(ctx context.Context, args ...string) (sample, error) {
	u, err := run(ctx, e.baselineEnv("bench:baseline/ws"), "bash", append([]string{e.script}, args...)...)
	if err != nil {
		return sample{}, err
	}
	return sample{usage: u, Uploaded: rcloneBytes(u.Stderr)}, nil
}

func rcloneBytes(stderr []byte) int64 {
	var n int64
	sc := bufio.NewScanner(bytes.NewReader(stderr))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Stats *struct {
				Bytes int64 `json:"bytes"`
			} `json:"stats"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Stats != nil {
			n += line.Stats.Bytes
		}
	}
	return n
}

func (e *env) tetherArgs(sub ...string) []string {
	return append(sub, "--store", e.minio.tetherURL("tether"), "--namespace", "bench", "--session", "compare", "--json")
}

// save runs `tether snapshot save` and takes bytesUploaded from its JSON.
func (e *env) save(ctx context.Context) (sample, error) {
	args := append(e.tetherArgs("snapshot", "save"), "--workspace", e.ws, "--cache-dir", e.cacheDir)
	u, err := run(ctx, e.minio.tetherEnv(), e.tether, args...)
	if err != nil {
		return sample{}, err
	}
	var st struct {
		BytesUploaded int64 `json:"bytesUploaded"`
	}
	if err := json.Unmarshal(u.Stdout, &st); err != nil {
		return sample{}, fmt.Errorf("tether snapshot save printed no JSON: %v: %q", err, tail(string(u.Stdout), 500))
	}
	return sample{usage: u, Uploaded: st.BytesUploaded}, nil
}

func (e *env) restoreTether(ctx context.Context, dest string) (sample, error) {
	u, err := run(ctx, e.minio.tetherEnv(), e.tether, append(e.tetherArgs("snapshot", "restore"), "--workspace", dest)...)
	return sample{usage: u}, err
}

func (e *env) restoreBaseline(ctx context.Context, dest string) (sample, error) {
	return e.baseline(ctx, "restore", dest)
}

// kase is one of the four per-cycle cases.
type kase struct {
	Key, Name, Short string
	// Baseline is the cycle of the reference schedule that picks the change
	// up: a state sync, or a repo backup for repository changes.
	Cycle  string
	change func(ws string, run int) error
}

var cases = []kase{
	{"a", "no change", "no change", "sync", func(string, int) error { return nil }},
	{"b", "1 KiB transcript append", "1 KiB append", "sync", func(ws string, r int) error {
		p := filepath.Join(ws, fmt.Sprintf(".claude/projects/-workspace/session-%02d.jsonl", r%20))
		f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		// One JSON line of exactly 1 KiB, as an agent's turn appends.
		line := fmt.Appendf(nil, `{"type":"assistant","run":%d,"message":{"role":"assistant","content":[{"type":"text","text":"`, r)
		line = text(rand.New(rand.NewSource(int64(r))), line, 1024)[:1024-len("\"}]}}\n")]
		line = bytes.ReplaceAll(line, []byte("\n"), []byte(" "))
		_, err = f.Write(append(line, "\"}]}}\n"...))
		return err
	}},
	{"c", "one-line source edit", "1-line edit", "backup", func(ws string, r int) error {
		p := filepath.Join(ws, "repos/app", srcPath(10+r))
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		i := bytes.IndexByte(b, '\n') // the first line is the package clause: edit the third
		i += bytes.IndexByte(b[i+1:], '\n') + 1
		b = append(b[:i+1:i+1], append([]byte(fmt.Sprintf("// edited in run %d\n", r)), b[i+1:]...)...)
		return os.WriteFile(p, b, 0o644)
	}},
	{"d", "new 10 MiB binary file", "10 MiB file", "sync", func(ws string, r int) error {
		return os.WriteFile(filepath.Join(ws, fmt.Sprintf("artifacts/bin/new-%d.bin", r)), randomBytes(rand.New(rand.NewSource(int64(1000+r))), 10<<20), 0o644)
	}},
}

// caseResult holds both methods' samples for one case.
type caseResult struct {
	kase
	Tether, Baseline series
	// Sidecar is a running `tether sync` noticing and saving the same
	// change by itself (nil when the run left it out).
	Sidecar series
}

// measureCases applies each case's change runs times; after each change both
// methods capture the same workspace, in alternating order so neither always
// finds the page cache warmed by the other.
func measureCases(ctx context.Context, e *env, runs int, sc *sidecar, logf func(string, ...any)) ([]caseResult, error) {
	var out []caseResult
	for _, k := range cases {
		res := caseResult{kase: k}
		for r := 0; r < runs; r++ {
			change := func() error { return k.change(e.ws, r) }
			if sc != nil {
				// The sidecar sees the change first and saves it by itself;
				// the one-shot save and the baseline run once it is quiet.
				s, err := sc.measure(change, k.Key != "a")
				if err != nil {
					return nil, fmt.Errorf("case %s run %d: sidecar: %w", k.Key, r, err)
				}
				res.Sidecar = append(res.Sidecar, s)
				logf("  case (%s) run %d: sidecar cpu %s up %s in %s", k.Key, r, s.CPU.Round(time.Millisecond), human(s.Uploaded), s.Wall.Round(time.Millisecond))
			} else if err := change(); err != nil {
				return nil, fmt.Errorf("case %s run %d: %w", k.Key, r, err)
			}
			b := func() error {
				s, err := e.baseline(ctx, k.Cycle)
				res.Baseline = append(res.Baseline, s)
				return err
			}
			t := func() error {
				s, err := e.save(ctx)
				res.Tether = append(res.Tether, s)
				return err
			}
			first, second := b, t
			if r%2 == 1 {
				first, second = t, b
			}
			if err := first(); err != nil {
				return nil, err
			}
			if err := second(); err != nil {
				return nil, err
			}
			logf("  case (%s) run %d: tether %s cpu %s up %s | baseline %s cpu %s up %s",
				k.Key, r, res.Tether[r].Wall.Round(time.Millisecond), res.Tether[r].CPU.Round(time.Millisecond), human(res.Tether[r].Uploaded),
				res.Baseline[r].Wall.Round(time.Millisecond), res.Baseline[r].CPU.Round(time.Millisecond), human(res.Baseline[r].Uploaded))
		}
		out = append(out, res)
	}
	return out, nil
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
