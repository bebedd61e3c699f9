package storetest

import (
	"context"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"strings"
)

// TestMinioKillRestart: Kill ends the server at once (connections refused),
// Restart brings it back on the same endpoint with the objects written
// before the kill, and Stop after a Kill leaves nothing running.
func TestMinioKillRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts MinIO")
	}
	if _, err := os.Stat(MinioBinary()); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("MinIO not installed: %v", err)
		}
		t.Skipf("!!! SKIPPING: MinIO not installed (%s): run hack/install-minio.sh", MinioBinary())
	}
	m, err := StartMinio(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	ctx := context.Background()
	if err := m.CreateBucket(ctx, "kill-restart"); err != nil {
		t.Fatal(err)
	}
	put := func() error {
		_, err := m.client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("kill-restart"), Key: aws.String("k"), Body: strings.NewReader("kept")})
		return err
	}
	if err := put(); err != nil {
		t.Fatal(err)
	}
	endpoint := m.Endpoint
	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	if resp, err := hc.Get(endpoint + "/minio/health/live"); err == nil {
		resp.Body.Close()
		t.Fatalf("MinIO still answers at %s after Kill", endpoint)
	}
	if err := m.Kill(); err == nil {
		t.Error("a second Kill did not say the server is not running")
	}
	if err := m.Restart(time.Minute); err != nil {
		t.Fatal(err)
	}
	if m.Endpoint != endpoint {
		t.Fatalf("Restart moved the server from %s to %s", endpoint, m.Endpoint)
	}
	out, err := m.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("kill-restart"), Key: aws.String("k")})
	if err != nil {
		t.Fatalf("the object written before the kill: %v", err)
	}
	out.Body.Close()
	if err := m.Restart(time.Minute); err == nil {
		t.Error("Restart of a running server did not refuse")
	}
}
