package runner

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/tether-dev/tether/internal/iox"
)

// cliProc is one running CLI process.
type cliProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan cliLine // closed when stdout ends
	done   chan struct{}
	err    error // Wait's result, set before done is closed
	stderr *iox.TailBuffer
}

type cliLine struct {
	b  []byte
	at time.Time // when the runner read it
}

func (r *Runner) cliArgs(resume string) []string {
	// --include-partial-messages: the reply's text as the model streams it
	// (stream_event lines), for AG-UI's live deltas; the complete message
	// still follows as its own line.
	args := []string{"-p", "--output-format", "stream-json", "--verbose", "--input-format", "stream-json", "--include-partial-messages"}
	if resume != "" {
		args = append(args, "--resume", resume)
	}
	if len(r.cfg.AllowedTools) > 0 {
		args = append(args, "--allowedTools", strings.Join(r.cfg.AllowedTools, ","))
	}
	if r.cfg.PermissionMode != "" {
		args = append(args, "--permission-mode", r.cfg.PermissionMode)
	}
	return append(args, r.cfg.ExtraArgs...)
}

func (r *Runner) cliEnv() []string {
	env := os.Environ()
	// Off unless asked for: a session pod must not phone home, and the
	// updater must never replace the pinned CLI under a running session.
	env = append(env, "DISABLE_AUTOUPDATER=1")
	if !r.cfg.Telemetry {
		env = append(env, "DISABLE_TELEMETRY=1", "DISABLE_ERROR_REPORTING=1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1")
	}
	env = append(env, r.cfg.Env...)
	// Last, so nothing overrides where transcripts go: the workspace is
	// what the sync snapshots.
	return append(env, "CLAUDE_CONFIG_DIR="+filepath.Join(r.cfg.Workspace, ClaudeDir))
}

// launch starts the CLI in its own process group, so that kill reaches the
// tools it runs too (a shell holding the CLI's stdout open would otherwise
// keep the runner waiting). The CLI gets SIGKILL if the runner dies
// (Pdeathsig), so a killed runner never leaves a CLI writing to the
// workspace; in a pod the container's death takes the rest.
func (r *Runner) launch(resume string) (*cliProc, error) {
	args := r.cliArgs(resume)
	cmd := exec.Command(r.cfg.ClaudeBin, args...)
	cmd.Dir = r.cfg.Cwd
	cmd.Env = r.cliEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	p := &cliProc{cmd: cmd, lines: make(chan cliLine, 256), done: make(chan struct{}), stderr: iox.NewTailBuffer(8 << 10)}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = io.MultiWriter(r.cfg.CLIStderr, p.stderr)
	p.stdin = stdin

	// Pdeathsig fires when the thread that started the child exits, not the
	// process: start and wait on one locked thread that lives as long as
	// the child.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		rd := bufio.NewReaderSize(stdout, 1<<20)
		for {
			b, err := rd.ReadBytes('\n')
			if len(bytes.TrimSpace(b)) > 0 {
				p.lines <- cliLine{b: b, at: time.Now()}
			}
			if err != nil {
				break
			}
		}
		close(p.lines)
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start the agent CLI %s: %w", r.cfg.ClaudeBin, err)
	}
	r.log.Info("agent CLI started", "pid", cmd.Process.Pid, "bin", r.cfg.ClaudeBin, "args", strings.Join(args, " "), "cwd", r.cfg.Cwd)
	return p, nil
}

// write sends one line to the CLI's stdin.
func (p *cliProc) write(line []byte) error {
	_, err := p.stdin.Write(line)
	return err
}

// kill ends the CLI and everything it started, and waits for it.
func (p *cliProc) kill() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	for range p.lines {
	}
	<-p.done
}

// exitDesc describes how the process ended, once done is closed.
func (p *cliProc) exitDesc() string {
	if p.err == nil {
		return "exit status 0"
	}
	return p.err.Error()
}

type handshake struct {
	version string
	pid     int
	// resumeError is set when the CLI refused --resume: what it said.
	resumeError string
}

// handshake sends the initialize control request and waits for the answer.
// The CLI loads a --resume session before it reads stdin, so an unknown
// session shows up here as an error result and an exit, before any turn.
func (r *Runner) handshake(p *cliProc, resume string) (handshake, error) {
	const reqID = "tether-initialize"
	var hs handshake
	req, _ := json.Marshal(map[string]any{"type": "control_request", "request_id": reqID, "request": map[string]any{"subtype": "initialize"}})
	if err := p.write(append(req, '\n')); err != nil {
		// A CLI that exits at once closes its stdin; the reason is on its
		// output, read below.
		r.log.Warn("write initialize request to the agent CLI", "err", err)
	}
	timer := time.NewTimer(r.cfg.StartTimeout)
	defer timer.Stop()
	var garbage []string
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				<-p.done
				if hs.resumeError != "" {
					return hs, nil
				}
				return hs, fmt.Errorf("the agent CLI %s exited before answering the initialize request (%s); stderr: %q; unparsable output: %q",
					r.cfg.ClaudeBin, p.exitDesc(), p.stderr.String(), garbage)
			}
			var msg struct {
				Type     string `json:"type"`
				Response struct {
					Subtype   string `json:"subtype"`
					RequestID string `json:"request_id"`
					Error     string `json:"error"`
					Response  struct {
						Version string `json:"claude_code_version"`
						PID     int    `json:"pid"`
					} `json:"response"`
				} `json:"response"`
			}
			if err := json.Unmarshal(l.b, &msg); err != nil {
				if len(garbage) < 5 {
					garbage = append(garbage, string(bytes.TrimSpace(l.b)))
				}
				r.recordCLI(0, l.b)
				continue
			}
			if msg.Type == "control_response" && msg.Response.RequestID == reqID {
				if msg.Response.Subtype != "success" {
					p.kill()
					return hs, fmt.Errorf("the agent CLI %s refused the initialize request: %s", r.cfg.ClaudeBin, msg.Response.Error)
				}
				hs.version, hs.pid = msg.Response.Response.Version, msg.Response.Response.PID
				return hs, nil
			}
			// Turn 0: what the CLI says at start belongs to no turn.
			ev := r.recordCLI(0, l.b)
			if ev.Result != nil && ev.Result.IsError {
				reason := strings.Join(ev.Result.Errors, "; ")
				if reason == "" {
					reason = ev.Result.Result
				}
				if reason == "" {
					reason = "error result " + ev.Result.Subtype
				}
				if resume == "" {
					p.kill()
					return hs, fmt.Errorf("the agent CLI %s failed at start: %s", r.cfg.ClaudeBin, reason)
				}
				// With --resume, an error result before any turn
				// (num_turns 0) is the CLI refusing the session.
				hs.resumeError = reason
				// It exits next; do not wait the whole start budget
				// if it lingers.
				timer.Reset(5 * time.Second)
			}
		case <-timer.C:
			p.kill()
			if hs.resumeError != "" {
				return hs, nil
			}
			return hs, fmt.Errorf("the agent CLI %s did not answer the initialize request within %s; stderr: %q; unparsable output: %q",
				r.cfg.ClaudeBin, r.cfg.StartTimeout, p.stderr.String(), garbage)
		}
	}
}
