package local

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/tether-dev/tether/internal/iox"
)

// sizeUnits are the units ParseSize accepts, case-insensitively. K, M, G and
// T are binary (1024-based), as in Kubernetes' Ki/Mi/Gi and in most tools'
// memory flags: a memory limit is almost always thought of in powers of two.
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kb": 1 << 10, "ki": 1 << 10, "kib": 1 << 10,
	"m": 1 << 20, "mb": 1 << 20, "mi": 1 << 20, "mib": 1 << 20,
	"g": 1 << 30, "gb": 1 << 30, "gi": 1 << 30, "gib": 1 << 30,
	"t": 1 << 40, "tb": 1 << 40, "ti": 1 << 40, "tib": 1 << 40,
}

// ParseSize parses a byte size such as 512M, 1.5GiB, 2Gi or 1073741824. It
// refuses zero, negative and unknown units, naming what it accepts.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := len(t)
	for i > 0 && (t[i-1] < '0' || t[i-1] > '9') && t[i-1] != '.' {
		i--
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := sizeUnits[unit]
	if !ok {
		return 0, fmt.Errorf("size %q has an unknown unit %q; use a number of bytes or one of K, M, G, T (binary; KiB, MiB, Gi... also accepted)", s, t[i:])
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" {
		return 0, fmt.Errorf("size %q is not a number followed by an optional unit, such as 512M or 2G", s)
	}
	b := v * float64(mult)
	if b < 1 || math.IsInf(b, 0) || math.IsNaN(b) || b > math.MaxInt64/2 {
		return 0, fmt.Errorf("size %q must be at least 1 byte and at most 4 EiB", s)
	}
	return int64(b), nil
}

// FormatSize prints n in the largest binary unit that keeps one decimal.
func FormatSize(n int64) string { return iox.FormatSize(n) }
