package snapshot

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

var dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// ValidateName checks that a namespace or session name is a DNS-1123 label, the
// rule Kubernetes uses for namespaces and object names. Names are never rewritten:
// a name that does not fit is an error telling the user what would.
func ValidateName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("%s name is empty; use lowercase letters, digits and '-'", kind)
	}
	if len(name) > 63 || !dns1123Label.MatchString(name) {
		return fmt.Errorf("%s name %q is not a DNS-1123 label: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit", kind, name)
	}
	return nil
}

// idWidth is the number of digits of a snapshot id. Zero padding keeps ids in
// lexical order, which is the order object stores list keys in.
const idWidth = 10

// FormatID returns the canonical form of snapshot number n.
func FormatID(n uint64) string { return fmt.Sprintf("%0*d", idWidth, n) }

// ParseID accepts a snapshot id with or without its leading zeros ("42",
// "0000000042") and returns its canonical form.
func ParseID(s string) (string, uint64, error) {
	t := strings.TrimSpace(s)
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil || n == 0 || len(t) > idWidth {
		return "", 0, fmt.Errorf("snapshot id %q is not valid: ids are positive numbers such as 42 or %s (see `tether snapshot ls`)", s, FormatID(42))
	}
	return FormatID(n), n, nil
}
