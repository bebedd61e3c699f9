// Package podreport is the record a session pod's hydrate and sync leave in
// their container's termination message (the kubelet's
// terminationMessagePath, /dev/termination-log), for the operator to put into
// the AgenticSession's status: which snapshot hydrate restored and which newer
// ones it had to skip, and, when the sync was fenced, who took the session over.
//
// The kubelet keeps at most MaxBytes of a container's message, so Encode*
// shortens the record to fit and still writes valid JSON. Parse is the
// operator's side: the message is written by a process in the user's pod, so
// it is bounded, decoded strictly, validated and redacted before any of it
// reaches a status.
package podreport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tether-dev/tether/internal/redact"
)

// MaxBytes is what the kubelet keeps of one container's termination message.
const MaxBytes = 4096

// Record kinds.
const (
	KindHydrate = "hydrate"
	KindFenced  = "fenced"
)

// Hydrate outcomes a record may carry (statesync's Outcome* values).
var hydrateOutcomes = map[string]bool{"restored": true, "restored-older": true, "fresh": true, "kept": true}

// Bounds of what Parse accepts and Encode writes.
const (
	maxReason  = 200 // one skip reason, before Encode shortens it further
	maxText    = 64  // host, via, writer id
	maxMessage = 1024
	// MaxSkipped is the most skipped snapshots a record can list.
	MaxSkipped = 100
	// maxEpoch keeps an epoch within what a status's int64 holds.
	maxEpoch = 1 << 53
)

// Skip is a snapshot hydrate did not restore, newer than the one it did.
type Skip struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// Hydrate is hydrate's record.
type Hydrate struct {
	Kind     string `json:"kind"`
	Outcome  string `json:"outcome"`
	Snapshot string `json:"snapshot,omitempty"`
	Epoch    uint64 `json:"epoch,omitempty"`
	// Skipped, newest first; Omitted more were skipped but did not fit.
	Skipped []Skip `json:"skipped,omitempty"`
	Omitted int    `json:"omitted,omitempty"`
}

// Fence is the record of a sync that stopped because a newer writer took the
// session over.
type Fence struct {
	Kind string `json:"kind"`
	// Epoch and Writer are the fenced sync's own.
	Epoch  uint64 `json:"epoch"`
	Writer string `json:"writer,omitempty"`
	// By* describe the newest epoch; ByTime is the taker's clock.
	ByEpoch  uint64    `json:"byEpoch"`
	ByWriter string    `json:"byWriter,omitempty"`
	ByHost   string    `json:"byHost,omitempty"`
	ByVia    string    `json:"byVia,omitempty"`
	ByTime   time.Time `json:"byTime,omitempty"`
	// Time is when the sync was fenced, by its own clock.
	Time    time.Time `json:"time"`
	Message string    `json:"message,omitempty"`
}

// EncodeHydrate returns h as JSON of at most MaxBytes: reasons are shortened
// first, then the oldest skipped entries are dropped and counted in Omitted.
func EncodeHydrate(h Hydrate) []byte {
	h.Kind = KindHydrate
	h.Outcome = clip(h.Outcome, maxText)
	h.Snapshot = clip(h.Snapshot, maxText)
	all := h.Skipped
	omitted := h.Omitted
	if len(all) > MaxSkipped {
		omitted += len(all) - MaxSkipped
		all = all[:MaxSkipped]
	}
	levels := []int{maxReason, 80, 32}
	for li, reasonMax := range levels {
		skipped := make([]Skip, len(all))
		for i, s := range all {
			skipped[i] = Skip{ID: clip(s.ID, maxText), Reason: clip(s.Reason, reasonMax)}
		}
		// Only at the shortest reasons are entries dropped, oldest first: the
		// newest skips, with why, matter most.
		low := len(skipped)
		if li == len(levels)-1 {
			low = 0
		}
		for n := len(skipped); n >= low; n-- {
			h.Skipped, h.Omitted = skipped[:n], omitted+len(skipped)-n
			if data, _ := json.Marshal(h); len(data) <= MaxBytes {
				return data
			}
		}
	}
	// Only a record whose other fields are oversize gets here; they are
	// clipped, so this fits.
	h.Skipped, h.Omitted = nil, omitted+len(all)
	data, _ := json.Marshal(h)
	return data
}

// EncodeFence returns f as JSON of at most MaxBytes.
func EncodeFence(f Fence) []byte {
	f.Kind = KindFenced
	f.Writer, f.ByWriter = clip(f.Writer, maxText), clip(f.ByWriter, maxText)
	f.ByHost, f.ByVia = clip(f.ByHost, maxText), clip(f.ByVia, maxText)
	f.Message = clip(f.Message, maxMessage)
	data, _ := json.Marshal(f)
	return data
}

// clip cuts s to at most n bytes on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n < 4 {
		return ""
	}
	s = s[:n-3]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "..."
}

// Parse reads a termination message: exactly one JSON object of a known kind
// with no unknown fields, within MaxBytes, every id a snapshot id, every
// string printable, bounded and redacted. It returns a *Hydrate or a *Fence;
// an empty message returns (nil, nil).
func Parse(msg string) (any, error) {
	if strings.TrimSpace(msg) == "" {
		return nil, nil
	}
	if len(msg) > MaxBytes {
		return nil, fmt.Errorf("termination message of %d bytes is over the %d the kubelet keeps", len(msg), MaxBytes)
	}
	var head struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal([]byte(msg), &head); err != nil {
		return nil, fmt.Errorf("termination message is not a tether record: %v", jsonProblem(err))
	}
	switch head.Kind {
	case KindHydrate:
		var h Hydrate
		if err := strict(msg, &h); err != nil {
			return nil, err
		}
		if !hydrateOutcomes[h.Outcome] {
			return nil, errors.New("hydrate record: unknown outcome")
		}
		if h.Snapshot != "" && !ValidID(h.Snapshot) {
			return nil, errors.New("hydrate record: its snapshot is not a 10-digit snapshot id")
		}
		if h.Epoch > maxEpoch {
			return nil, errors.New("hydrate record: epoch out of range")
		}
		if len(h.Skipped) > MaxSkipped || h.Omitted < 0 || h.Omitted > 1<<20 {
			return nil, errors.New("hydrate record: skipped list out of bounds")
		}
		for i, s := range h.Skipped {
			if !ValidID(s.ID) {
				return nil, fmt.Errorf("hydrate record: skipped entry %d is not a 10-digit snapshot id", i)
			}
			if len(s.Reason) > maxReason {
				return nil, errors.New("hydrate record: a skip reason is too long")
			}
			h.Skipped[i].Reason = Clean(s.Reason, maxReason)
		}
		return &h, nil
	case KindFenced:
		var f Fence
		if err := strict(msg, &f); err != nil {
			return nil, err
		}
		if f.Epoch == 0 || f.ByEpoch <= f.Epoch || f.ByEpoch > maxEpoch {
			return nil, fmt.Errorf("fence record: epoch %d fenced by epoch %d is not a takeover", f.Epoch, f.ByEpoch)
		}
		for _, s := range []string{f.Writer, f.ByWriter, f.ByHost, f.ByVia} {
			if len(s) > maxText {
				return nil, errors.New("fence record: a name is too long")
			}
		}
		if len(f.Message) > maxMessage {
			return nil, errors.New("fence record: message too long")
		}
		f.Writer, f.ByWriter = Clean(f.Writer, maxText), Clean(f.ByWriter, maxText)
		f.ByHost, f.ByVia = Clean(f.ByHost, maxText), Clean(f.ByVia, maxText)
		f.Message = Clean(f.Message, maxMessage)
		return &f, nil
	}
	// Values are never echoed: the message is the pod's, and may hold anything.
	return nil, errors.New("termination message is of no known kind")
}

// strict decodes exactly one object into v, refusing unknown fields.
func strict(msg string, v any) error {
	dec := json.NewDecoder(strings.NewReader(msg))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("termination message is not a valid tether record: %v", jsonProblem(err))
	}
	if dec.More() {
		return errors.New("termination message has data after its record")
	}
	var rest bytes.Buffer
	if _, err := rest.ReadFrom(dec.Buffered()); err == nil && strings.TrimSpace(rest.String()) != "" {
		return errors.New("termination message has data after its record")
	}
	return nil
}

// ValidID reports whether s is a snapshot id in its canonical form (ten digits).
func ValidID(s string) bool {
	if len(s) != 10 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Clean makes s fit for a status or an event: control and format characters
// replaced, credentials redacted (internal/redact), at most n bytes.
func Clean(s string, n int) string {
	return clip(redact.String(printable(s)), n)
}

func printable(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "?")
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return ' '
		}
		return r
	}, s)
}

// jsonProblem says what is wrong with a message without quoting it (a
// json.UnmarshalTypeError or an unknown-field error can carry its text).
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %s has the wrong type", clip(printable(te.Field), 32))
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return "an unknown field"
	}
	return "not one JSON object"
}
