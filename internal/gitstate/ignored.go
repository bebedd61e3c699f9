package gitstate

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
)

// MaxIgnoredListing bounds what Ignored reads of git's listing.
const MaxIgnoredListing = 4 << 20

// Ignored lists what git ignores in the working tree of the repository at
// repoDir: the files and directories a capture leaves out, because it saves
// tracked and untracked files only. Paths are relative to repoDir,
// slash-separated, as git prints them; a directory that holds only ignored
// entries is one path ending in "/" (git ls-files --directory). The
// listing runs with the same configuration as a capture (no global
// excludes, filter drivers off), so what it lists is exactly what the
// capture did not take. truncated says the listing was longer than
// MaxIgnoredListing bytes and only its start is returned. The repository is
// only read.
func Ignored(ctx context.Context, repoDir string) (paths []string, truncated bool, err error) {
	r, err := openRepo(ctx, repoDir)
	if err != nil {
		return nil, false, err
	}
	return r.ignored(ctx)
}

// ignored is Ignored on an open repository.
func (r *repo) ignored(ctx context.Context) (paths []string, truncated bool, err error) {
	args := []string{"ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory"}
	c := r.git().cmd(ctx, nil, args...)
	var errb bytes.Buffer
	c.Stderr = &limitedBuffer{max: 64 << 10, buf: &errb}
	out, err := c.StdoutPipe()
	if err != nil {
		return nil, false, err
	}
	if err := c.Start(); err != nil {
		return nil, false, err
	}
	data, rerr := io.ReadAll(io.LimitReader(out, MaxIgnoredListing+1))
	if len(data) > MaxIgnoredListing {
		truncated = true
		data = data[:MaxIgnoredListing]
		if i := bytes.LastIndexByte(data, 0); i >= 0 {
			data = data[:i+1]
		} else {
			data = nil
		}
		_ = c.Process.Kill()
	}
	werr := c.Wait()
	if ctx.Err() != nil {
		return nil, false, ctx.Err()
	}
	if rerr != nil {
		return nil, false, rerr
	}
	if werr != nil && !truncated {
		return nil, false, &gitError{args: args, stderr: errb.String(), err: werr}
	}
	for _, p := range strings.Split(string(data), "\x00") {
		if p == "" || p == ".git" || strings.HasPrefix(p, ".git/") {
			continue
		}
		if err := checkIgnoredPath(p); err != nil {
			return nil, false, fmt.Errorf("git ls-files in %s: %w", r.top, err)
		}
		paths = append(paths, p)
	}
	return paths, truncated, nil
}

// checkIgnoredPath refuses a listed path that would lead outside the
// working tree (git never prints one; the check keeps a misbehaving git
// from naming what the caller then reads).
func checkIgnoredPath(p string) error {
	q := strings.TrimSuffix(p, "/")
	if q == "" || strings.HasPrefix(q, "/") {
		return fmt.Errorf("unexpected path %q", p)
	}
	for _, c := range strings.Split(q, "/") {
		if c == "" || c == "." || c == ".." {
			return fmt.Errorf("unexpected path %q", p)
		}
	}
	return nil
}

// limitedBuffer keeps the first max bytes written to it and drops the rest.
type limitedBuffer struct {
	max int
	buf *bytes.Buffer
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		if len(p) > room {
			b.buf.Write(p[:room])
		} else {
			b.buf.Write(p)
		}
	}
	return len(p), nil
}
