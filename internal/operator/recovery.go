package operator

import (
	"math"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	tetherv1 "github.com/tether-dev/tether/api/v1alpha1"
)

// MaxRestarts is spec.recovery.maxRestarts with its default.
func MaxRestarts(s *tetherv1.AgenticSession) int32 {
	if m := s.Spec.Recovery.MaxRestarts; m != nil {
		return *m
	}
	return DefaultMaxRestarts
}

// Backoff is the wait before restart number n (1-based): InitialBackoff
// doubled n-1 times, capped at MaxBackoff.
func Backoff(s *tetherv1.AgenticSession, n int32) time.Duration {
	initial, max := DefaultInitialBackoff, DefaultMaxBackoff
	if b := s.Spec.Recovery.InitialBackoff; b != nil && b.Duration >= 0 {
		initial = b.Duration
	}
	if b := s.Spec.Recovery.MaxBackoff; b != nil && b.Duration > 0 {
		max = b.Duration
	}
	if initial > max {
		initial = max
	}
	d := initial
	for i := int32(1); i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// oomFactor is spec.recovery.oomMemoryFactor with its default.
func oomFactor(s *tetherv1.AgenticSession) float64 {
	if f := s.Spec.Recovery.OOMMemoryFactor; f != nil && *f > 1 {
		return *f
	}
	return DefaultOOMFactor
}

// MemoryCeiling is the largest runner memory limit recovery raises to: the
// spec's ceiling, or four times the initial limit. Nil when the runner has no
// memory limit (then there is nothing to raise).
func MemoryCeiling(s *tetherv1.AgenticSession) *resource.Quantity {
	if c := s.Spec.Recovery.MemoryCeiling; c != nil {
		return c
	}
	initial := InitialMemoryLimit(s)
	if initial == nil {
		return nil
	}
	return resource.NewQuantity(initial.Value()*4, resource.BinarySI)
}

// BumpMemory returns the runner's memory limit after an OOM kill at current:
// current times the factor, rounded up to a whole MiB, never above the ceiling
// and never below current. A restart with the same limit tends to die the same
// way, so a raise is what users expect.
func BumpMemory(current resource.Quantity, factor float64, ceiling *resource.Quantity) resource.Quantity {
	const mi = 1 << 20
	next := int64(math.Ceil(float64(current.Value())*factor/mi)) * mi
	if ceiling != nil && next > ceiling.Value() {
		next = ceiling.Value()
	}
	if next < current.Value() {
		next = current.Value()
	}
	return *resource.NewQuantity(next, resource.BinarySI)
}
