package podreport

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestParseHostile: what a pod writes is refused unless it is one valid
// record, and nothing of a credential survives into what Parse returns.
func TestParseHostile(t *testing.T) {
	const tok = "ghp_abcdefghijklmnopqrstuvwxyz0123456789"
	bad := map[string]string{
		"oversize":      `{"kind":"hydrate","outcome":"restored","x":"` + strings.Repeat("a", MaxBytes) + `"}`,
		"invalid JSON":  `{"kind":"hydrate","outcome":`,
		"two objects":   `{"kind":"hydrate","outcome":"fresh"}{"kind":"hydrate"}`,
		"unknown field": `{"kind":"hydrate","outcome":"fresh","run":"rm -rf /"}`,
		"unknown kind":  `{"kind":"exec"}`,
		"bad outcome":   `{"kind":"hydrate","outcome":"pwned"}`,
		"bad snapshot":  `{"kind":"hydrate","outcome":"restored","snapshot":"../../etc"}`,
		"short id":      `{"kind":"hydrate","outcome":"restored-older","snapshot":"0000000001","skipped":[{"id":"12","reason":"x"}]}`,
		"token id":      `{"kind":"hydrate","outcome":"restored-older","snapshot":"0000000001","skipped":[{"id":"` + tok + `","reason":"x"}]}`,
		"not takeover":  `{"kind":"fenced","epoch":3,"byEpoch":2}`,
		"huge epoch":    `{"kind":"fenced","epoch":1,"byEpoch":18446744073709551615}`,
	}
	for name, msg := range bad {
		rec, err := Parse(msg)
		if err == nil {
			t.Errorf("%s: accepted as %+v", name, rec)
			continue
		}
		if strings.Contains(err.Error(), tok) || strings.Contains(err.Error(), "rm -rf") {
			t.Errorf("%s: the error quotes the message: %v", name, err)
		}
	}
	rec, err := Parse(`{"kind":"fenced","epoch":1,"byEpoch":2,"byHost":"n1\u001b[2J","message":"taken over; token=` + tok + `"}`)
	f, ok := rec.(*Fence)
	if err != nil || !ok || strings.Contains(f.Message, tok) || strings.ContainsRune(f.ByHost, 0x1b) {
		t.Fatalf("fence record: %+v %v", rec, err)
	}
	rec, err = Parse(`{"kind":"hydrate","outcome":"restored-older","snapshot":"0000000001","skipped":[{"id":"0000000002","reason":"object x is corrupt; Authorization: Bearer ` + tok + `"}]}`)
	if h, ok := rec.(*Hydrate); err != nil || !ok || strings.Contains(h.Skipped[0].Reason, tok) {
		t.Fatalf("hydrate record: %+v %v", rec, err)
	}
}

// TestEncodeHydrateBound: long multi-byte reasons that JSON escapes, many
// skips: at most MaxBytes, valid, parseable, newest kept, the rest counted.
func TestEncodeHydrateBound(t *testing.T) {
	for _, n := range []int{1, 20, 60, 250} {
		h := Hydrate{Outcome: "restored-older", Snapshot: "0000000001", Epoch: 7}
		for i := n + 1; i > 1; i-- {
			h.Skipped = append(h.Skipped, Skip{ID: fmt.Sprintf("%010d", i), Reason: strings.Repeat("é<>&", 300)})
		}
		data := EncodeHydrate(h)
		var got Hydrate
		if len(data) > MaxBytes || json.Unmarshal(data, &got) != nil {
			t.Fatalf("%d skips: %d bytes, valid %v", n, len(data), json.Valid(data))
		}
		if _, err := Parse(string(data)); err != nil {
			t.Fatalf("%d skips: own record refused: %v", n, err)
		}
		if len(got.Skipped)+got.Omitted != n || len(got.Skipped) == 0 || got.Skipped[0].ID != fmt.Sprintf("%010d", n+1) || got.Skipped[0].Reason == "" {
			t.Fatalf("%d skips: %d listed, %d omitted, first %+v", n, len(got.Skipped), got.Omitted, got.Skipped[0])
		}
	}
}
