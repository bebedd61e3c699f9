package store

import "context"

// Open opens the store named by rawURL:
//
//	file:///abs/dir                 plain files under dir (the embedded default, see DefaultURL)
//	s3://bucket?endpoint=http://127.0.0.1:9000&use_path_style=true&region=us-east-1
//	gs://bucket                     Google Cloud Storage (only built with -tags tether_gcs)
//	azblob://container              Azure Blob Storage (only built with -tags tether_azblob)
//	mem://                          in memory, for tests; every Open is a new empty store
//
// A gs:// or azblob:// URL in a binary built without its tag fails here with
// one line saying how to rebuild (or, for GCS, the S3-compatible URL to use).
//
// Every scheme takes prefix=p/ to scope the store under a key prefix. s3://
// also takes the query parameters of gocloud.dev/aws (region, endpoint,
// profile, ...) and of gocloud.dev/blob/s3blob (use_path_style, ssetype,
// kmskeyid, ...), plus conditional_put=false for S3 servers that ignore
// If-None-Match (PutIfAbsent then degrades to Stat-then-Put; see PutIfAbsent).
//
// Credentials never go in the URL, which ends up in logs, process lists and
// pod specs: a URL with user:password@, a secret-looking parameter or a
// token-shaped value is refused, and so is one whose parameters hold a URL
// with any of these (endpoint=http://key:secret@host). They come from the
// environment and each cloud's standard chain (see CredentialsHint). The
// store's String and every error it returns are redacted (internal/redact).
//
// Open checks the URL and, for file://, the directory; it does not contact a
// remote store, so a network blip at start-up is handled by WithRetry on the
// first call instead of failing the process.
func Open(ctx context.Context, rawURL string) (Store, error) {
	p, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	// On error, return a nil Store rather than a nil *fileStore or
	// *blobStore inside one: a caller's st != nil must mean a store.
	if p.scheme == "file" {
		s, err := openFile(p)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	if err := missingDriver(p); err != nil {
		return nil, err
	}
	s, err := openBlob(ctx, p)
	if err != nil {
		return nil, err
	}
	return s, nil
}
