package local

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/tether-dev/tether/internal/iox"
)

// child is one process the supervisor runs: the sync or one life of the
// runner.
type child struct {
	name    string
	life    int
	cmd     *exec.Cmd
	pid     int
	started time.Time
	done    chan struct{} // closed once Wait returned
	state   *os.ProcessState
	tail    *iox.TailBuffer // the last lines it logged
}

// startChild starts self with args in a session (and so a process group) of
// its own, so the terminal's Ctrl-C reaches only the supervisor, which stops
// the children in the right order. pdeath is sent to the child if the
// supervisor dies, so a killed supervisor never leaves a runner writing to
// the workspace. jail, when set, confines it.
func startChild(name string, life int, self string, args, env []string, log io.Writer, pdeath syscall.Signal, jail Jail) (*child, error) {
	cmd := exec.Command(self, args...)
	cmd.Env = env
	cmd.Stdin = nil
	tail := iox.NewTailBuffer(4 << 10)
	w := io.MultiWriter(log, tail)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: pdeath}
	after := func() {}
	if jail != nil {
		a, err := jail.Prepare(cmd)
		if err != nil {
			return nil, err
		}
		after = a
	}
	c := &child{name: name, life: life, cmd: cmd, done: make(chan struct{}), tail: tail}
	// Pdeathsig fires when the thread that started the child exits, not
	// the process: start and wait on one locked thread that lives as long
	// as the child.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := cmd.Start()
		after()
		if err != nil {
			started <- err
			return
		}
		c.pid, c.started = cmd.Process.Pid, time.Now()
		started <- nil
		cmd.Wait()
		c.state = cmd.ProcessState
		close(c.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s (%s %s): %w", name, self, strings.Join(args, " "), err)
	}
	return c, nil
}

// signal sends sig to the child's process if it still runs.
func (c *child) signal(sig syscall.Signal) {
	select {
	case <-c.done:
	default:
		syscall.Kill(c.pid, sig)
	}
}

// wait waits for the child up to d; it reports whether it exited.
func (c *child) wait(d time.Duration, force <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.done:
		return true
	case <-t.C:
	case <-force:
	}
	return false
}

// describeExit returns the cause (CauseSignal or CauseExit), the signal name
// and the exit code of a finished child.
func describeExit(st *os.ProcessState) (cause, sig string, code *int) {
	ws, ok := st.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		return CauseSignal, signalName(ws.Signal()), nil
	}
	n := st.ExitCode()
	return CauseExit, "", &n
}

func signalName(s syscall.Signal) string {
	names := map[syscall.Signal]string{syscall.SIGKILL: "SIGKILL", syscall.SIGTERM: "SIGTERM", syscall.SIGINT: "SIGINT",
		syscall.SIGSEGV: "SIGSEGV", syscall.SIGABRT: "SIGABRT", syscall.SIGBUS: "SIGBUS", syscall.SIGHUP: "SIGHUP", syscall.SIGQUIT: "SIGQUIT"}
	if n, ok := names[s]; ok {
		return n
	}
	return fmt.Sprintf("signal %d", int(s))
}
