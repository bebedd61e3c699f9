package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"unicode/utf16"

	"github.com/tether-dev/tether/internal/fsutil"
)

// maxProjectKey is the length past which the CLI shortens a project key and
// appends a hash (seen on 2.1.328 with a 254-character key).
const maxProjectKey = 200

// ProjectKey returns the directory name the CLI files a working directory's
// transcripts under: every character that is not an ASCII letter or digit
// becomes '-' (per UTF-16 code unit, as the CLI works on JavaScript strings),
// and a key longer than 200 is cut to 200 and suffixed with '-' and a base-36
// hash of cwd. Resume only finds a transcript under the key of the cwd the CLI
// runs in, so a restored workspace must keep its path.
func ProjectKey(cwd string) string {
	units := utf16.Encode([]rune(cwd))
	key := make([]byte, len(units))
	for i, u := range units {
		if u < 128 && (u >= 'a' && u <= 'z' || u >= 'A' && u <= 'Z' || u >= '0' && u <= '9') {
			key[i] = byte(u)
		} else {
			key[i] = '-'
		}
	}
	if len(key) <= maxProjectKey {
		return string(key)
	}
	return string(key[:maxProjectKey]) + "-" + jsHash36(units)
}

// jsHash36 is the CLI's short path hash: the Java-style 32-bit string hash
// over UTF-16 code units, absolute value, in base 36.
func jsHash36(units []uint16) string {
	var h int32
	for _, u := range units {
		h = h*31 + int32(u)
	}
	v := int64(h)
	if v < 0 {
		v = -v
	}
	return strconv.FormatInt(v, 36)
}

// ResolveCwd returns dir as the CLI sees its working directory: absolute, with
// symlinks resolved. The CLI files transcripts under the real path (seen on
// 2.1.328, even with PWD naming the link), so the key must come from it.
func ResolveCwd(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}

// TranscriptPath is where the CLI keeps the transcript of session id when it
// runs in cwd with CLAUDE_CONFIG_DIR=configDir. cwd must be as the CLI sees
// it: see ResolveCwd.
func TranscriptPath(configDir, cwd, id string) string {
	return filepath.Join(configDir, "projects", ProjectKey(cwd), id+".jsonl")
}

// Repair says what RepairTranscript did.
type Repair struct {
	Path string
	// Cut is the number of bytes removed from the end: a last line that a
	// crash left without its newline and that is not valid JSON.
	Cut int64
	// SavedTo is the file holding the removed bytes ("" when nothing was cut).
	SavedTo string
	// AddedNewline is set when the last line was complete JSON missing only
	// its newline; it is kept and terminated.
	AddedNewline bool
}

// Changed reports whether the transcript was modified.
func (r Repair) Changed() bool { return r.Cut > 0 || r.AddedNewline }

// RepairTranscript makes path end on a complete JSONL line. A kill while the
// CLI appends leaves a torn last line, and the CLI then fails to resume or
// drops the conversation. The torn bytes are never deleted: they are first
// written, fsynced, to <path>.cut-<offset> next to the transcript (a name the
// CLI does not read as a transcript), then the file is truncated and fsynced.
// A crash at any point leaves either the original or the repaired transcript
// with the cut bytes saved, and running the repair again is harmless.
// A missing file returns an error satisfying errors.Is(err, fs.ErrNotExist).
func RepairTranscript(path string) (Repair, error) {
	rep := Repair{Path: path}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return rep, fmt.Errorf("repair transcript %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return rep, fmt.Errorf("repair transcript %s: %w", path, err)
	}
	size := fi.Size()
	start, err := lastLineStart(f, size)
	if err != nil {
		return rep, fmt.Errorf("repair transcript %s: %w", path, err)
	}
	if start == size {
		return rep, nil
	}
	tail := make([]byte, size-start)
	if _, err := f.ReadAt(tail, start); err != nil {
		return rep, fmt.Errorf("repair transcript %s: read last line: %w", path, err)
	}
	if json.Valid(tail) && bytes.HasPrefix(bytes.TrimSpace(tail), []byte("{")) {
		if _, err := f.WriteAt([]byte("\n"), size); err != nil {
			return rep, fmt.Errorf("repair transcript %s: terminate last line: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			return rep, fmt.Errorf("repair transcript %s: fsync: %w", path, err)
		}
		rep.AddedNewline = true
		return rep, nil
	}
	aside := path + ".cut-" + strconv.FormatInt(start, 10)
	if err := fsutil.WriteFileAtomic(aside, tail, 0o600); err != nil {
		return rep, fmt.Errorf("repair transcript %s: keep the torn last line aside: %w", path, err)
	}
	if err := f.Truncate(start); err != nil {
		return rep, fmt.Errorf("repair transcript %s: cut the torn last line (saved in %s): %w", path, aside, err)
	}
	if err := f.Sync(); err != nil {
		return rep, fmt.Errorf("repair transcript %s: fsync: %w", path, err)
	}
	rep.Cut, rep.SavedTo = size-start, aside
	return rep, nil
}

// lastLineStart returns the offset just after the last '\n' in the file's
// first size bytes (0 when there is none), reading backwards so a large
// transcript is not read whole.
func lastLineStart(r io.ReaderAt, size int64) (int64, error) {
	const chunk = 64 << 10
	buf := make([]byte, chunk)
	end := size
	for end > 0 {
		n := int64(chunk)
		if end < n {
			n = end
		}
		if _, err := r.ReadAt(buf[:n], end-n); err != nil && err != io.EOF {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return end - n + int64(i) + 1, nil
		}
		end -= n
	}
	return 0, nil
}
