package fsutil

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// CopySelf copies the running executable to dst (mode 0755), atomically: a
// temp file in dst's directory, fsync, rename. The session pod's first init
// container runs it (`tether copy-self`) from the tether image, so the user's
// agent image can run `tether runner` without containing tether, and the
// tether image needs no shell or cp. It lives here, not with the operator, so
// the lean tether binary that runs it carries no Kubernetes code.
func CopySelf(dst string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("copy-self: cannot find the running executable: %w", err)
	}
	return copyFile(self, dst)
}

func copyFile(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy-self: %w", err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".tether-*")
	if err != nil {
		return fmt.Errorf("copy-self: cannot write to %s (is the shared volume mounted?): %w", filepath.Dir(dst), err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = io.Copy(tmp, in); err != nil {
		return fmt.Errorf("copy-self: copy %s to %s: %w", src, dst, err)
	}
	if err = tmp.Chmod(0o755); err != nil {
		return fmt.Errorf("copy-self: %w", err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("copy-self: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("copy-self: %w", err)
	}
	if err = os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("copy-self: %w", err)
	}
	return nil
}
