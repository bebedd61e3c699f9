package faults

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }

// Unprivileged is the user the sync and the writer run as when the campaign
// runs as root: root ignores file permissions, so an unwritable store would
// not be one. 65534 is nobody/nogroup.
const Unprivileged = 65534

// runAs is the credential of the processes the campaign starts: Unprivileged
// when it runs as root, itself otherwise.
func runAs() *syscall.Credential {
	if os.Geteuid() != 0 {
		return nil
	}
	return &syscall.Credential{Uid: Unprivileged, Gid: Unprivileged, NoSetGroups: true}
}

// chownToRunner makes p (recursively) belong to the user the processes run as.
func chownToRunner(p string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	return filepath.WalkDir(p, func(q string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(q, Unprivileged, Unprivileged)
	})
}

// MountTmpfs mounts a tmpfs of size bytes at dir, owned by the user the
// processes run as. It fails when mounting is not permitted (not root, or a
// container without CAP_SYS_ADMIN); callers skip or, in CI, fail.
func MountTmpfs(dir string, size int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	uid := os.Geteuid()
	if uid == 0 {
		uid = Unprivileged
	}
	opts := fmt.Sprintf("size=%d,mode=0755,uid=%d,gid=%d", size, uid, uid)
	// The system call, not mount(8): nothing to install, and the same
	// permission check.
	if err := syscall.Mount("tether-faults", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount a %d MiB tmpfs at %s: %w", size>>20, dir, err)
	}
	return nil
}

// Unmount unmounts dir, retrying while it is busy for up to 10 s, then
// detaching it lazily so that no mount outlives the campaign.
func Unmount(dir string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := syscall.Unmount(dir, 0)
		if err == nil || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOENT) {
			return nil // unmounted, or not a mount point (any more)
		}
		if time.Now().After(deadline) {
			if lerr := syscall.Unmount(dir, syscall.MNT_DETACH); lerr != nil {
				return fmt.Errorf("unmount %s: %v; lazy unmount: %v", dir, err, lerr)
			}
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Fill writes the file p until its file system is full (ENOSPC) and returns
// the bytes written. The file system must be small (a tmpfs): this fills it
// all.
func Fill(p string, limit int64) (int64, error) {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	// Big blocks first, then pages, so that no byte is left free.
	for _, size := range []int{1 << 20, 4096, 1} {
		for n < limit {
			k, err := f.Write(buf[:size])
			n += int64(k)
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			if err != nil {
				return n, fmt.Errorf("fill %s: %w", p, err)
			}
		}
	}
	if n >= limit {
		return n, fmt.Errorf("fill %s: wrote %d bytes without filling the file system; is it really a small tmpfs?", p, n)
	}
	return n, nil
}

// dirModes is the permission bits of every directory under a root, to put
// back after a fault made them read-only.
type dirModes map[string]fs.FileMode

// makeReadOnly removes the write bits of every directory under root, parents
// before children: once a parent is read-only no new child can appear in it,
// so no directory is missed. Files are left alone: a store writes through
// temp files and renames, which needs only the directories.
func makeReadOnly(root string) (dirModes, error) {
	modes := dirModes{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		modes[p] = fi.Mode().Perm()
		return os.Chmod(p, fi.Mode().Perm()&^0o222)
	})
	return modes, err
}

// restore puts the directories' modes back.
func (m dirModes) restore() error {
	var errs []error
	for p, mode := range m {
		if err := os.Chmod(p, mode); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// copyExecutable copies the running program to dst, readable and executable
// by the unprivileged user (the test binary lives in a 0700 directory).
func copyExecutable(dst string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	in, err := os.Open(self)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func itoa(n int) string { return strconv.Itoa(n) }

// ownerFile, in a session's root directory, holds the pid of the test
// process that mounted under it.
const ownerFile = "owner.pid"

// ReapStale unmounts the campaign's tmpfs mounts whose test process is gone
// and removes their directories. A test killed by its timeout (a panic that
// skips every cleanup) or by SIGKILL leaves its mounts behind; the next run
// takes them away. Mounts of a campaign still running are left alone.
func ReapStale() {
	data, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "tether-faults" || f[2] != "tmpfs" {
			continue
		}
		mnt := f[1]
		root := filepath.Dir(mnt)
		if !strings.HasPrefix(filepath.Base(root), "tether-faults-") {
			continue
		}
		if pid, err := os.ReadFile(filepath.Join(root, ownerFile)); err == nil {
			if n, err := strconv.Atoi(strings.TrimSpace(string(pid))); err == nil && syscall.Kill(n, 0) == nil {
				continue // its test is still running
			}
		}
		if err := Unmount(mnt); err == nil {
			fmt.Fprintf(os.Stderr, "faults: unmounted %s, left behind by a test that did not finish\n", mnt)
			os.RemoveAll(root)
		}
	}
}
