package storetest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// MinioVersion is the MinIO module version hack/install-minio.sh builds; the
// binary is looked up as minio-<MinioVersion>. Keep the two in sync (a test
// checks it).
const MinioVersion = "v0.0.0-20260212201848-7aac2a2c5b7c"

// MinioBinary returns where the MinIO binary is expected: $TETHER_MINIO_BIN,
// or minio-<MinioVersion> under $TETHER_CACHE_DIR/bin (default
// ~/.cache/tether/bin), where hack/install-minio.sh puts it.
func MinioBinary() string {
	if p := os.Getenv("TETHER_MINIO_BIN"); p != "" {
		return p
	}
	cache := os.Getenv("TETHER_CACHE_DIR")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "tether")
	}
	return filepath.Join(cache, "bin", "minio-"+MinioVersion)
}

type minioMissingError struct{ path string }

func (e *minioMissingError) Error() string {
	return fmt.Sprintf("MinIO binary %s not found; run hack/install-minio.sh (or set TETHER_MINIO_BIN)", e.path)
}

// MinioServer is a MinIO server on 127.0.0.1, started by StartMinio. It
// takes the store tests' credentials (MinioAccessKey, MinioSecretKey,
// MinioRegion), which only ever protect a server that lives as long as the
// process that started it.
type MinioServer struct {
	Endpoint string // http://127.0.0.1:PORT
	bin      string
	addr     string // 127.0.0.1:PORT, kept across Restart
	console  string
	data     string
	cleanup  string         // "remove" when data is a temporary directory
	cmd      *exec.Cmd      // nil after Kill until Restart
	stdin    io.WriteCloser // closing it stops the server (see watchdog)
	exited   chan struct{}
	log      *syncBuffer
	client   *s3.Client
}

var (
	minioOnce sync.Once
	minioSrv  *MinioServer
	minioErr  error
)

func minioServer() (*MinioServer, error) {
	minioOnce.Do(func() { minioSrv, minioErr = StartMinio("") })
	return minioSrv, minioErr
}

// StartMinio starts the pinned MinIO (MinioBinary) on 127.0.0.1 with its data
// in dataDir, or in a temporary directory removed when it stops if dataDir is
// "". The server dies with this process however it ends (see watchdog).
func StartMinio(dataDir string) (*MinioServer, error) {
	bin := MinioBinary()
	if _, err := os.Stat(bin); err != nil {
		return nil, &minioMissingError{bin}
	}
	// A free port can be taken between probing and MinIO binding it; try a
	// few times before giving up.
	var err error
	for range 3 {
		var m *MinioServer
		if m, err = startMinio(bin, dataDir); err == nil {
			return m, nil
		}
	}
	return nil, err
}

// Credentials of every server StartMinio starts.
const (
	MinioAccessKey = testAccessKey
	MinioSecretKey = testSecretKey
	MinioRegion    = testRegion
)

// watchdog runs MinIO under sh so the server dies with the test binary
// however the binary ends (a test timeout's panic or SIGKILL skip every
// cleanup): sh holds the read end of a pipe whose write end only the test
// binary has, and end-of-file on it means the test binary is gone. It also
// removes the data directory after the server exits when $5 is "remove".
const watchdog = `
bin="$1"; addr="$2"; console="$3"; data="$4"; cleanup="$5"
exec 3<&0
"$bin" server --quiet --address "$addr" --console-address "$console" "$data" </dev/null &
pid=$!
{ read -r _ <&3; kill "$pid" 2>/dev/null; } </dev/null >/dev/null 2>&1 &
reader=$!
wait "$pid"; st=$?
kill "$reader" 2>/dev/null
[ "$cleanup" = remove ] && rm -rf "$data"
exit $st
`

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startMinio(bin, data string) (*MinioServer, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	consolePort, err := FreePort()
	if err != nil {
		return nil, err
	}
	cleanup := "keep"
	if data == "" {
		if data, err = os.MkdirTemp("", "tether-minio-"); err != nil {
			return nil, err
		}
		cleanup = "remove"
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	m := &MinioServer{Endpoint: "http://" + addr, bin: bin, addr: addr, console: "127.0.0.1:" + strconv.Itoa(consolePort),
		data: data, cleanup: cleanup, log: &syncBuffer{}}
	if err := m.start(90 * time.Second); err != nil {
		return nil, err
	}
	m.client = s3.New(s3.Options{
		BaseEndpoint: aws.String(m.Endpoint),
		Region:       testRegion,
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(testAccessKey, testSecretKey, ""),
	})
	return m, nil
}

// start runs the server on m.addr with m.data and waits until it answers its
// health check.
func (m *MinioServer) start(ready time.Duration) error {
	cmd := exec.Command("sh", "-c", watchdog, "minio-watchdog", m.bin, m.addr, m.console, m.data, m.cleanup)
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+testAccessKey,
		"MINIO_ROOT_PASSWORD="+testSecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CI_CD=on", // allows a data dir on the root disk, no update checks
	)
	// Its own process group, so that Kill reaches the server under sh too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = m.log, m.log
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start MinIO: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	m.cmd, m.stdin, m.exited = cmd, stdin, exited

	deadline := time.Now().Add(ready)
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-exited:
			return fmt.Errorf("MinIO exited during start-up: %s", m.log.String())
		default:
		}
		resp, err := hc.Get(m.Endpoint + "/minio/health/live")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			m.Stop()
			return fmt.Errorf("MinIO not ready at %s after %s: %s", m.Endpoint, time.Since(start).Round(time.Millisecond), m.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// CreateBucket creates a bucket on the server.
func (m *MinioServer) CreateBucket(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := m.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		return fmt.Errorf("create bucket %s on %s: %w", name, m.Endpoint, err)
	}
	return nil
}

// Stop ends the server and waits for it (and its data dir removal).
func (m *MinioServer) Stop() {
	if m.cmd == nil { // killed and not restarted
		if m.cleanup == "remove" {
			_ = os.RemoveAll(m.data)
		}
		return
	}
	_ = m.stdin.Close()
	select {
	case <-m.exited:
	case <-time.After(20 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
	m.cmd = nil
}

// Kill ends the server at once with SIGKILL, as a crash or an OOM kill
// would: no graceful shutdown, and the data directory stays for Restart.
// Clients get connection refused until then.
func (m *MinioServer) Kill() error {
	if m.cmd == nil {
		return fmt.Errorf("kill MinIO at %s: it is not running", m.Endpoint)
	}
	_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-m.exited:
	case <-time.After(20 * time.Second):
		return fmt.Errorf("kill MinIO at %s: still running 20s after SIGKILL", m.Endpoint)
	}
	_ = m.stdin.Close()
	m.cmd = nil
	return nil
}

// Restart starts a killed server again on the same address and data
// directory, and waits (at most ready) until it answers. The port may have
// been taken by another process meanwhile; then it retries until ready is
// over and says so.
func (m *MinioServer) Restart(ready time.Duration) error {
	if m.cmd != nil {
		return fmt.Errorf("restart MinIO at %s: it is still running; Kill it first", m.Endpoint)
	}
	deadline := time.Now().Add(ready)
	for {
		err := m.start(time.Until(deadline))
		if err == nil {
			return nil
		}
		m.cmd = nil
		if time.Now().After(deadline) {
			return fmt.Errorf("restart MinIO on %s with data %s: %w", m.addr, m.data, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Main runs the tests of a package that uses Backends or MinIO and stops the
// MinIO server afterwards. Use it from TestMain:
//
//	func TestMain(m *testing.M) { storetest.Main(m) }
//
// Without it the server still stops when the test binary exits (the
// watchdog sees its pipe close), only a little later.
func Main(m *testing.M) {
	code := m.Run()
	if minioSrv != nil {
		minioSrv.Stop()
	}
	os.Exit(code)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() > 1<<20 { // keep memory bounded if the server is chatty
		return len(p), nil
	}
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
