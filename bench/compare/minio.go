package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/tether-dev/tether/internal/store/storetest"
)

// The same credentials the store tests use (storetest): they only ever
// protect a server on 127.0.0.1 that lives as long as this process.
const (
	accessKey = "tether-test"
	secretKey = "tether-test-secret-key"
	region    = "us-east-1"
)

// minioBinary is where hack/install-minio.sh puts the server; the version
// is the one the store tests pin.
func minioBinary() string {
	if p := os.Getenv("TETHER_MINIO_BIN"); p != "" {
		return p
	}
	cache := os.Getenv("TETHER_CACHE_DIR")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "tether")
	}
	return filepath.Join(cache, "bin", "minio-"+storetest.MinioVersion)
}

type minioServer struct {
	endpoint string
	cmd      *exec.Cmd
	log      bytes.Buffer
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startMinio runs MinIO on 127.0.0.1 with its data in dataDir. The server
// gets SIGKILL if this process dies (Pdeathsig), so a killed benchmark leaves
// no server behind.
func startMinio(dataDir string) (*minioServer, error) {
	bin := minioBinary()
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("MinIO binary %s not found; run hack/install-minio.sh (or set TETHER_MINIO_BIN)", bin)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cport, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	m := &minioServer{endpoint: "http://" + addr}
	m.cmd = exec.Command(bin, "server", "--quiet", "--address", addr, "--console-address", "127.0.0.1:"+strconv.Itoa(cport), dataDir)
	m.cmd.Env = append(cleanEnv(), "MINIO_ROOT_USER="+accessKey, "MINIO_ROOT_PASSWORD="+secretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=on")
	m.cmd.Stdout, m.cmd.Stderr = &m.log, &m.log
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start MinIO: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = m.cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case <-exited:
			return nil, fmt.Errorf("MinIO exited during start-up: %s", m.log.String())
		default:
		}
		if resp, err := http.Get(m.endpoint + "/minio/health/live"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return m, nil
			}
		}
		if time.Now().After(deadline) {
			m.stop()
			return nil, fmt.Errorf("MinIO not ready at %s after 90s: %s", m.endpoint, m.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (m *minioServer) stop() {
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = m.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Kill()
	}
}

// rcloneEnv configures the rclone remote "bench" on the server, with no
// config file.
func (m *minioServer) rcloneEnv() []string {
	return []string{
		"RCLONE_CONFIG=/dev/null",
		"RCLONE_CONFIG_BENCH_TYPE=s3",
		"RCLONE_CONFIG_BENCH_PROVIDER=Minio",
		"RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=" + accessKey,
		"RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=" + secretKey,
		"RCLONE_CONFIG_BENCH_ENDPOINT=" + m.endpoint,
		"RCLONE_CONFIG_BENCH_REGION=" + region,
	}
}

// tetherEnv gives tether the S3 credentials (it reads them from the
// environment only).
func (m *minioServer) tetherEnv() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + accessKey, "AWS_SECRET_ACCESS_KEY=" + secretKey, "AWS_REGION=" + region, "AWS_EC2_METADATA_DISABLED=true"}
}

func (m *minioServer) tetherURL(bucket string) string {
	return "s3://" + bucket + "?" + url.Values{"endpoint": {m.endpoint}, "use_path_style": {"true"}, "region": {region}}.Encode()
}
