package store

import (
	"fmt"
	"strings"

	"gocloud.dev/blob"
)

// optionalDrivers are the schemes whose gocloud driver is compiled in only
// with a build tag (driver_gcs.go, driver_azblob.go): gcsblob brings gRPC,
// OpenTelemetry and Google's auth libraries, azureblob the Azure SDK, and
// together with the operator's client-go they nearly tripled the memory of
// the sync sidecar that runs in every session pod. The value tells a user
// what to do instead; BUCKET becomes the URL's bucket.
var optionalDrivers = map[string]string{
	"gs": "gs:// support is not built into this tether binary; rebuild with -tags tether_gcs, " +
		"or use Google Cloud Storage's S3-compatible endpoint: s3://BUCKET?endpoint=https://storage.googleapis.com&region=auto " +
		"with HMAC keys in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
	"azblob": "azblob:// support is not built into this tether binary; rebuild with -tags tether_azblob " +
		"(the driver is left out of the default build for its size)",
}

// missingDriver is the error for a URL whose scheme is known but whose driver
// this binary was built without, or nil. Asking gocloud's mux, where the
// tagged files register their driver, keeps the answer true for any tags.
func missingDriver(p *parsedURL) error {
	hint, ok := optionalDrivers[p.scheme]
	if !ok || blob.DefaultURLMux().ValidBucketScheme(p.scheme) {
		return nil
	}
	return fmt.Errorf("store %s: %s", p.display, strings.ReplaceAll(hint, "BUCKET", p.u.Host))
}
