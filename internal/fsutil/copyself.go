package fsutil

import (
	"fmt"
	"os"
)

// CopySelf copies the running executable to dst (mode 0755), atomically (see
// WriteFileAtomic). The session pod's first init container runs it (`tether
// copy-self`) from the tether image, so the user's agent image can run
// `tether runner` without containing tether, and the tether image needs no
// shell or cp. It lives here, not with the operator, so the lean tether
// binary that runs it carries no Kubernetes code.
func CopySelf(dst string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("copy-self: cannot find the running executable: %w", err)
	}
	in, err := os.Open(self)
	if err != nil {
		return fmt.Errorf("copy-self: %w", err)
	}
	defer in.Close()
	if err := writeAtomic(dst, in, 0o755); err != nil {
		return fmt.Errorf("copy-self: copy %s: %w; is the shared volume mounted?", self, err)
	}
	return nil
}
