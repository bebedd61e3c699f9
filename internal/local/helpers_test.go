package local

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the processes the supervisor runs: with
// TETHER_TEST_ROLE set it plays that role instead of running tests.
func TestMain(m *testing.M) {
	switch os.Getenv("TETHER_TEST_ROLE") {
	case "":
		if os.Getenv("TETHER_TEST_FAKE") == "1" && len(os.Args) > 1 {
			fakeMain()
		}
		os.Exit(m.Run())
	case "family":
		family()
	case "hog":
		hog()
	case "sleep":
		time.Sleep(time.Hour)
	}
	os.Exit(3)
}

// family plays a runner with its CLI and tools: it starts a sleeper in a
// process group of its own (as the runner starts the CLI) and, when
// TETHER_TEST_HOG_MB is set, a memory hog in a session of its own (as the
// CLI starts its Bash tool, detached); it prints the children's pids and
// waits.
func family() {
	start := func(role string) int {
		c := exec.Command(os.Args[0])
		c.Env = append(os.Environ(), "TETHER_TEST_ROLE="+role)
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if role == "hog" {
			c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		}
		c.Stdout, c.Stderr = os.Stderr, os.Stderr
		if err := c.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(4)
		}
		go c.Wait()
		return c.Process.Pid
	}
	fmt.Printf("sleeper %d\n", start("sleep"))
	if os.Getenv("TETHER_TEST_HOG_MB") != "" {
		fmt.Printf("hog %d\n", start("hog"))
	}
	if code := os.Getenv("TETHER_TEST_EXIT_AFTER"); code != "" {
		d, _ := time.ParseDuration(os.Getenv("TETHER_TEST_EXIT_DELAY"))
		time.Sleep(d)
		n, _ := strconv.Atoi(code)
		os.Exit(n)
	}
	time.Sleep(time.Hour)
}

// hog touches memory 8 MiB at a time up to TETHER_TEST_HOG_MB, then waits.
func hog() {
	mb, _ := strconv.Atoi(os.Getenv("TETHER_TEST_HOG_MB"))
	// With TETHER_TEST_HOG_STAMP, the time of every 1 MiB touched goes to
	// that file: the last one is within a millisecond of the OOM kill.
	var stamp *os.File
	if p := os.Getenv("TETHER_TEST_HOG_STAMP"); p != "" {
		stamp, _ = os.Create(p)
	}
	var keep [][]byte
	for i := 0; i < mb/8; i++ {
		b := make([]byte, 8<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
			if stamp != nil && j%(1<<20) == 0 {
				stamp.WriteAt([]byte(fmt.Sprintf("%020d", time.Now().UnixNano())), 0)
			}
		}
		keep = append(keep, b)
		time.Sleep(5 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "hog: holding %d MiB\n", len(keep)*8)
	time.Sleep(time.Hour)
}

func alive(pid int) bool {
	st, ok := readProcStat(pid)
	return ok && st.state != 'Z' && st.state != 'X'
}

// needCgroup returns a cgroup jail or skips: a memory cgroup is a property of
// the machine, not something a hack/ script can install. CI machines of this
// kind have one; TETHER_REQUIRE_CGROUP=1 (or CI=true) turns the skip into a
// failure.
func needCgroup(t *testing.T, limit int64) Jail {
	t.Helper()
	j, reasons, err := NewJail(MemoryCgroup, "test", limit)
	if err != nil {
		msg := fmt.Sprintf("no writable memory cgroup here (%v); the kernel OOM test needs one (run as root on a cgroup v1 or v2 machine)", reasons)
		if os.Getenv("TETHER_REQUIRE_CGROUP") == "1" || os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() { j.Close() })
	return j
}
