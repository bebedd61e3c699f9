package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// Backend is one place a test can keep objects: a URL for store.Open that
// names a fresh, empty bucket or directory.
type Backend struct {
	Name string // "file", "gofakes3" or "minio"
	URL  string
}

// Test credentials for the S3 backends. gofakes3 accepts anything; MinIO is
// started with these as its root user.
const (
	testAccessKey = "tether-test"
	testSecretKey = "tether-test-secret-key"
	testRegion    = "us-east-1"
)

var credsOnce sync.Once

// UseTestCredentials points the AWS credential chain of this test process at
// the test credentials. store.Open takes S3 credentials only from the
// environment, and t.Setenv cannot be used in parallel tests, so the
// variables are set once for the whole process (and inherited by child
// processes a test starts). The settings that could make the chain look
// elsewhere (profiles, session tokens, the EC2 metadata service, which is
// not on loopback) are cleared.
func UseTestCredentials() {
	credsOnce.Do(func() {
		for k, v := range map[string]string{
			"AWS_ACCESS_KEY_ID":         testAccessKey,
			"AWS_SECRET_ACCESS_KEY":     testSecretKey,
			"AWS_REGION":                testRegion,
			"AWS_EC2_METADATA_DISABLED": "true",
		} {
			os.Setenv(k, v)
		}
		for _, k := range []string{"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"} {
			os.Unsetenv(k)
		}
	})
}

var bucketSeq atomic.Int64

// newBucketName returns a bucket name unique in this process and unlikely to
// repeat across processes sharing a server.
func newBucketName() string {
	return fmt.Sprintf("tether-%d-%08x", bucketSeq.Add(1), rand.Uint32())
}

// S3URL is the store URL of bucket on an S3 server at endpoint.
func S3URL(endpoint, bucket string) string {
	return "s3://" + bucket + "?" + url.Values{
		"endpoint":       {endpoint},
		"use_path_style": {"true"},
		"region":         {testRegion},
	}.Encode()
}

// FileURL is the store URL of directory dir.
func FileURL(dir string) string {
	return "file://" + (&url.URL{Path: dir}).EscapedPath()
}

// Backends returns one fresh, empty Backend of each kind available: a
// t.TempDir for "file", a new in-process gofakes3 server for "gofakes3", and
// a new bucket on the MinIO server of this test binary for "minio".
//
// MinIO is started on first use (see Main) from the binary that
// hack/install-minio.sh builds. When it is not installed, the minio backend
// is left out with a loud log line, or, with CI=true, the test fails. With
// -short it is left out too.
func Backends(t testing.TB) []Backend {
	t.Helper()
	bs := []Backend{
		{Name: "file", URL: FileURL(t.TempDir())},
		{Name: "gofakes3", URL: GofakeS3(t)},
	}
	if u, ok := MinIO(t); ok {
		bs = append(bs, Backend{Name: "minio", URL: u})
	}
	return bs
}

// GofakeS3 starts an in-process S3 fake on 127.0.0.1 for the rest of the
// test and returns the URL of an empty bucket on it.
func GofakeS3(t testing.TB) string {
	t.Helper()
	UseTestCredentials()
	be := s3mem.New()
	fake := gofakes3.New(be, gofakes3.WithLogger(gofakes3.DiscardLog()))
	srv := httptest.NewServer(fake.Server())
	t.Cleanup(srv.Close)
	bucket := newBucketName()
	if err := be.CreateBucket(bucket); err != nil {
		t.Fatalf("gofakes3: create bucket: %v", err)
	}
	return S3URL(srv.URL, bucket)
}

// MinIO returns the URL of a new, empty bucket on the MinIO server of this
// test binary, starting the server on first use. ok is false when the MinIO
// binary is not installed and CI is not set; the reason is logged.
func MinIO(t testing.TB) (u string, ok bool) {
	t.Helper()
	UseTestCredentials()
	if testing.Short() {
		t.Logf("-short: the minio backend is left out (it starts an external server)")
		return "", false
	}
	srv, err := minioServer()
	if err != nil {
		if missing, isMissing := err.(*minioMissingError); isMissing {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%v", missing)
			}
			t.Logf("!!! SKIPPING THE MINIO BACKEND: %v", missing)
			return "", false
		}
		t.Fatalf("minio: %v", err)
	}
	bucket := newBucketName()
	if err := srv.CreateBucket(context.Background(), bucket); err != nil {
		t.Fatalf("minio: %v", err)
	}
	return S3URL(srv.Endpoint, bucket), true
}
