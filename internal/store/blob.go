package store

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/memblob" // mem://
	_ "gocloud.dev/blob/s3blob"  // s3://; gs:// and azblob:// are behind build tags (drivers.go)
	"gocloud.dev/gcerrors"

	"github.com/tether-dev/tether/internal/redact"
)

// maxSinglePut is S3's limit for one PutObject request.
const maxSinglePut = 5 << 30

// headFirstSize is the size from which PutIfAbsent on S3 checks for the key
// before uploading. Go HTTP servers (MinIO among them) drain up to 256 KiB of
// an unread request body before answering; above that they close the
// connection under a client still sending.
const headFirstSize = 256 << 10

// blobStore serves s3://, mem:// and, in binaries built with their tags,
// gs:// and azblob:// through gocloud.dev/blob.
//
// S3 writes bypass gocloud and go to PutObject directly. gocloud's S3 writer
// switches to a multipart upload above 16 MiB, and If-None-Match on the
// completing request is not honoured by every S3 implementation (gofakes3
// ignores it), so a large PutIfAbsent could silently overwrite. One PutObject
// with If-None-Match: * is a single atomic conditional write everywhere it is
// supported, and our objects (chunks, manifests, bundles) are far below the
// 5 GiB single-request limit.
type blobStore struct {
	bucket  *blob.Bucket
	prefix  string
	display string

	// S3 only.
	s3       *s3.Client
	s3Bucket string
	sseType  string
	kmsKeyID string
	// conditional is false when the URL said conditional_put=false or the
	// server answered If-None-Match with NotImplemented; PutIfAbsent then
	// falls back to Stat-then-Put, which two racing writers can both pass.
	conditional atomic.Bool

	// bucketSeen is set once the bucket is known to exist, so that a
	// NotFound after that is about the object, not a missing bucket.
	bucketSeen atomic.Bool
}

func openBlob(ctx context.Context, p *parsedURL) (*blobStore, error) {
	s := &blobStore{prefix: p.prefix, display: p.display}
	s.conditional.Store(p.conditionalPut)
	q := p.u.Query()
	b, err := blob.DefaultURLMux().OpenBucketURL(ctx, p.u)
	if err != nil {
		// gocloud's error repeats the URL it was given.
		return nil, fmt.Errorf("open store %s: %w", p.display, redact.Error(err))
	}
	s.bucket = b
	if p.scheme == "s3" {
		if !b.As(&s.s3) {
			_ = b.Close()
			return nil, fmt.Errorf("open store %s: gocloud's s3 driver did not expose its client", p.display)
		}
		s.s3Bucket = p.u.Host
		s.sseType = q.Get("ssetype")
		s.kmsKeyID = q.Get("kmskeyid")
	}
	return s, nil
}

func (s *blobStore) String() string { return s.display }
func (s *blobStore) Close() error   { return s.bucket.Close() }

func (s *blobStore) full(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	if err := ValidateKey(s.prefix + key); err != nil {
		return "", err
	}
	return s.prefix + key, nil
}

func (s *blobStore) Put(ctx context.Context, key string, data []byte) error {
	return s.write(ctx, "put", key, data, false)
}

func (s *blobStore) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	return s.write(ctx, "put-if-absent", key, data, true)
}

func (s *blobStore) write(ctx context.Context, op, key string, data []byte, noReplace bool) error {
	full, err := s.full(key)
	if err != nil {
		return opErr(op, key, s.display, err)
	}
	if s.s3 != nil {
		return s.writeS3(ctx, op, key, full, data, noReplace)
	}
	sum := md5.Sum(data)
	err = s.bucket.WriteAll(ctx, full, data, &blob.WriterOptions{
		ContentType: "application/octet-stream",
		ContentMD5:  sum[:],
		IfNotExist:  noReplace,
	})
	if err != nil {
		if noReplace && gcerrors.Code(err) == gcerrors.FailedPrecondition {
			return existsErr(key, s.display)
		}
		return opErr(op, key, s.display, err)
	}
	s.bucketSeen.Store(true)
	return nil
}

func (s *blobStore) writeS3(ctx context.Context, op, key, full string, data []byte, noReplace bool) error {
	if len(data) > maxSinglePut {
		return opErr(op, key, s.display, permanent(fmt.Errorf("object of %d bytes is larger than the 5 GiB a single S3 PUT accepts", len(data))))
	}
	if noReplace && !s.conditional.Load() {
		return s.statThenPut(ctx, key, full, data)
	}
	if noReplace && len(data) >= headFirstSize {
		// MinIO checks If-None-Match only after it has started reading the
		// body, then answers 412 and drops the connection while the client
		// is still sending, so the client sees "connection reset" instead
		// of ErrExists. A HEAD first avoids that for the common case (the
		// object is already there: content-addressed data uploaded before)
		// and saves the upload; the conditional PUT still decides races,
		// and a reset in that narrow window is a transient error that a
		// retry resolves through this HEAD.
		if _, err := s.Stat(ctx, key); err == nil {
			return existsErr(key, s.display)
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	err := s.putObject(ctx, full, data, noReplace)
	if err != nil && noReplace && apiCode(err) == "NotImplemented" {
		// An S3 implementation without conditional writes. Remember it, and
		// take the weaker path from now on rather than failing every write.
		s.conditional.Store(false)
		return s.statThenPut(ctx, key, full, data)
	}
	if err != nil {
		if noReplace && (apiCode(err) == "PreconditionFailed" || httpStatus(err) == http.StatusPreconditionFailed) {
			return existsErr(key, s.display)
		}
		return opErr(op, key, s.display, s.explainS3(err))
	}
	s.bucketSeen.Store(true)
	return nil
}

// statThenPut is PutIfAbsent for S3 servers that ignore or refuse
// If-None-Match: correct for a single writer, but two writers racing on one
// key can both see "absent" and the later PUT replaces the earlier.
func (s *blobStore) statThenPut(ctx context.Context, key, full string, data []byte) error {
	if _, err := s.Stat(ctx, key); err == nil {
		return existsErr(key, s.display)
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	if err := s.putObject(ctx, full, data, false); err != nil {
		return opErr("put-if-absent", key, s.display, s.explainS3(err))
	}
	return nil
}

func (s *blobStore) putObject(ctx context.Context, full string, data []byte, ifNoneMatch bool) error {
	in := &s3.PutObjectInput{
		Bucket:        aws.String(s.s3Bucket),
		Key:           aws.String(full),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		ContentType:   aws.String("application/octet-stream"),
	}
	if ifNoneMatch {
		in.IfNoneMatch = aws.String("*")
	}
	if s.sseType != "" {
		in.ServerSideEncryption = s3types.ServerSideEncryption(s.sseType)
	}
	if s.kmsKeyID != "" {
		in.SSEKMSKeyId = aws.String(s.kmsKeyID)
	}
	var optFns []func(*s3.Options)
	if ifNoneMatch {
		// The SDK's own retry would hide an ambiguous failure: if the first
		// attempt stored the object and only its answer was lost, the SDK's
		// second attempt gets 412 and we would report ErrExists for our own
		// write. One attempt here leaves the retry to WithRetry, which reads
		// the object back in exactly that case.
		optFns = append(optFns, func(o *s3.Options) { o.RetryMaxAttempts = 1 })
	}
	_, err := s.s3.PutObject(ctx, in, optFns...)
	return err
}

func (s *blobStore) explainS3(err error) error {
	if apiCode(err) == "NoSuchBucket" {
		return fmt.Errorf("bucket %q does not exist; create it first: %w", s.s3Bucket, err)
	}
	return err
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// notFound returns the error for a NotFound answer about key. S3 answers a
// HEAD on a missing bucket exactly like a HEAD on a missing key, and "no
// object" must never be what a caller hears when the whole bucket is gone (a
// restore would start fresh instead of failing), so the first NotFound checks
// that the bucket is there.
func (s *blobStore) notFound(ctx context.Context, op, key string) error {
	if !s.bucketSeen.Load() {
		ok, err := s.bucket.IsAccessible(ctx)
		if err != nil {
			return opErr(op, key, s.display, fmt.Errorf("object not found, and checking that the bucket exists failed: %w", err))
		}
		if !ok {
			return opErr(op, key, s.display, errors.New("the bucket does not exist or is not accessible; create it or fix the URL"))
		}
		s.bucketSeen.Store(true)
	}
	return notFoundErr(op, key, s.display)
}

func (s *blobStore) Get(ctx context.Context, key string) ([]byte, error) {
	full, err := s.full(key)
	if err != nil {
		return nil, opErr("get", key, s.display, err)
	}
	data, err := s.bucket.ReadAll(ctx, full)
	if err != nil {
		if gcerrors.Code(err) == gcerrors.NotFound && apiCode(err) != "NoSuchBucket" {
			return nil, s.notFound(ctx, "get", key)
		}
		return nil, opErr("get", key, s.display, s.explainS3(err))
	}
	s.bucketSeen.Store(true)
	return data, nil
}

func (s *blobStore) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	full, err := s.full(key)
	if err != nil {
		return ObjectInfo{}, opErr("stat", key, s.display, err)
	}
	a, err := s.bucket.Attributes(ctx, full)
	if err != nil {
		if gcerrors.Code(err) == gcerrors.NotFound && apiCode(err) != "NoSuchBucket" {
			return ObjectInfo{}, s.notFound(ctx, "stat", key)
		}
		return ObjectInfo{}, opErr("stat", key, s.display, s.explainS3(err))
	}
	s.bucketSeen.Store(true)
	return ObjectInfo{Key: key, Size: a.Size, ModTime: a.ModTime}, nil
}

func (s *blobStore) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	if err := validatePrefix(prefix); err != nil {
		return opErr("list", prefix, s.display, err)
	}
	it := s.bucket.List(&blob.ListOptions{Prefix: s.prefix + prefix})
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			s.bucketSeen.Store(true)
			return nil
		}
		if err != nil {
			return opErr("list", prefix, s.display, s.explainS3(err))
		}
		if obj.IsDir {
			continue
		}
		key := obj.Key[len(s.prefix):]
		if ValidateKey(key) != nil {
			continue // written by something else; Get could not fetch it
		}
		if err := fn(ObjectInfo{Key: key, Size: obj.Size, ModTime: obj.ModTime}); err != nil {
			return err
		}
	}
}

func (s *blobStore) Delete(ctx context.Context, key string) error {
	full, err := s.full(key)
	if err != nil {
		return opErr("delete", key, s.display, err)
	}
	if err := s.bucket.Delete(ctx, full); err != nil {
		// S3 deletes of absent keys succeed; other drivers say NotFound.
		if gcerrors.Code(err) == gcerrors.NotFound && apiCode(err) != "NoSuchBucket" {
			return nil
		}
		return opErr("delete", key, s.display, s.explainS3(err))
	}
	return nil
}
