package main

import (
	"fmt"
	"os"
	"time"

	"github.com/tether-dev/tether/internal/podreport"
	"github.com/tether-dev/tether/internal/redact"
	"github.com/tether-dev/tether/internal/snapshot"
	"github.com/tether-dev/tether/internal/statesync"
)

// hydrateReport is the part of a hydrate's result the operator shows.
func hydrateReport(res *statesync.HydrateResult) []byte {
	h := podreport.Hydrate{Outcome: res.Outcome, Snapshot: res.Snapshot, Epoch: res.Epoch}
	for _, s := range res.Skipped {
		h.Skipped = append(h.Skipped, podreport.Skip{ID: s.ID, Reason: redact.String(s.Reason)})
	}
	return podreport.EncodeHydrate(h)
}

// fenceReport is the record of a fenced sync, now by its own clock.
func fenceReport(fe *snapshot.FencedError, now time.Time) []byte {
	f := podreport.Fence{Time: now.UTC(), Message: redact.String(fe.Error())}
	if fe.Own != nil {
		f.Epoch, f.Writer = fe.Own.Epoch, fe.Own.ID
	}
	if fe.By != nil {
		f.ByEpoch, f.ByWriter, f.ByHost, f.ByVia = fe.By.Epoch, fe.By.ID, fe.By.Host, fe.By.Via
		if !fe.By.Time.IsZero() {
			f.ByTime = fe.By.Time.UTC()
		}
	}
	return podreport.EncodeFence(f)
}

// writeTerminationLog writes data over path in place: the kubelet reads the
// file it mounted there (it cannot be replaced by a rename), and only after
// the process exited, so a torn write cannot be read.
func writeTerminationLog(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("termination log %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("termination log %s: %w", path, err)
	}
	return f.Close()
}
