package store

import (
	"context"
	"strings"
	"testing"

	"gocloud.dev/blob"
)

// A gs:// or azblob:// store in a binary built without its driver fails at
// Open with one line that says how to get it; with the build tag the driver
// is there and the URL reaches it.
func TestOptionalDrivers(t *testing.T) {
	// Keep gcsblob, when built in, from probing for credentials (or for a
	// GCE metadata server) on this machine.
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/tether-test-credentials.json")
	wants := map[string][]string{
		"gs":     {"store gs://my-bucket?prefix=p/: gs:// support is not built into this tether binary", "-tags tether_gcs", "s3://my-bucket?endpoint=https://storage.googleapis.com&region=auto"},
		"azblob": {"store azblob://my-bucket?prefix=p/: azblob:// support is not built into this tether binary", "-tags tether_azblob"},
	}
	for scheme, want := range wants {
		if _, ok := optionalDrivers[scheme]; !ok {
			t.Fatalf("%s:// is not in optionalDrivers", scheme)
		}
		st, err := Open(context.Background(), scheme+"://my-bucket?prefix=p/")
		if blob.DefaultURLMux().ValidBucketScheme(scheme) {
			// Built with the tag: whatever the driver says (credentials
			// missing), it is not the missing-driver error.
			if err != nil && strings.Contains(err.Error(), "not built into") {
				t.Errorf("%s:// is built in, but Open says %v", scheme, err)
			}
			if st != nil {
				st.Close()
			}
			continue
		}
		if err == nil {
			st.Close()
			t.Fatalf("Open(%s://my-bucket) without its driver succeeded", scheme)
		}
		msg := err.Error()
		for _, w := range want {
			if !strings.Contains(msg, w) {
				t.Errorf("Open(%s://my-bucket) = %q; want it to contain %q", scheme, msg, w)
			}
		}
		if strings.Contains(msg, "\n") {
			t.Errorf("Open(%s://my-bucket) error is not one line: %q", scheme, msg)
		}
	}
}
