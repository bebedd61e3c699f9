package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"gocloud.dev/gcerrors"
)

// ErrTooLarge is returned (wrapped) by GetLimit when the object holds more
// than the caller's limit.
var ErrTooLarge = errors.New("object is larger than the limit")

// LimitGetter is implemented by stores that can refuse an oversized object
// before reading it into memory. Whoever can write a store can put a huge
// object under any key: a reader that knows how large an object may be asks
// for at most that much.
type LimitGetter interface {
	// GetLimit is Get for an object of at most limit bytes; a larger one is
	// refused with an error wrapping ErrTooLarge, having read at most limit+1
	// bytes of it.
	GetLimit(ctx context.Context, key string, limit int64) ([]byte, error)
}

// GetLimit reads the object under key through s's LimitGetter when it has
// one; otherwise it checks the size with Stat before the Get, and the
// length of what Get returned (the object may have been replaced in
// between).
func GetLimit(ctx context.Context, s Store, key string, limit int64) ([]byte, error) {
	if l, ok := s.(LimitGetter); ok {
		return l.GetLimit(ctx, key, limit)
	}
	oi, err := s.Stat(ctx, key)
	if err != nil {
		return nil, err
	}
	if oi.Size > limit {
		return nil, tooLargeErr(key, s.String(), oi.Size, limit)
	}
	data, err := s.Get(ctx, key)
	if err == nil && int64(len(data)) > limit {
		return nil, tooLargeErr(key, s.String(), int64(len(data)), limit)
	}
	return data, err
}

func tooLargeErr(key, store string, size, limit int64) error {
	return permanent(opErr("get", key, store, fmt.Errorf("%w: it holds %d bytes, at most %d expected", ErrTooLarge, size, limit)))
}

// readLimit reads all of r, which the store says holds size bytes, refusing
// more than limit whatever the body turns out to hold.
func readLimit(r io.Reader, size, limit int64, key, store string) ([]byte, error) {
	if size > limit {
		return nil, tooLargeErr(key, store, size, limit)
	}
	buf := bytes.NewBuffer(make([]byte, 0, max(size, 0)+bytes.MinRead))
	if _, err := buf.ReadFrom(io.LimitReader(r, limit+1)); err != nil {
		return nil, err
	}
	if int64(buf.Len()) > limit {
		return nil, tooLargeErr(key, store, int64(buf.Len()), limit)
	}
	return buf.Bytes(), nil
}

func (s *fileStore) GetLimit(ctx context.Context, key string, limit int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, opErr("get", key, s.display, err)
	}
	full, err := s.path(key)
	if err != nil {
		return nil, opErr("get", key, s.display, err)
	}
	f, err := os.Open(full)
	if err == nil {
		defer f.Close()
		var fi os.FileInfo
		if fi, err = f.Stat(); err == nil {
			var data []byte
			if data, err = readLimit(f, fi.Size(), limit, key, s.display); err == nil || errors.Is(err, ErrTooLarge) {
				return data, err
			}
		}
	}
	if isMissing(err) {
		return nil, notFoundErr("get", key, s.display)
	}
	return nil, opErr("get", key, s.display, err)
}

func (s *blobStore) GetLimit(ctx context.Context, key string, limit int64) ([]byte, error) {
	full, err := s.full(key)
	if err != nil {
		return nil, opErr("get", key, s.display, err)
	}
	r, err := s.bucket.NewReader(ctx, full, nil)
	if err != nil {
		if gcerrors.Code(err) == gcerrors.NotFound && apiCode(err) != "NoSuchBucket" {
			return nil, s.notFound(ctx, "get", key)
		}
		return nil, opErr("get", key, s.display, s.explainS3(err))
	}
	defer r.Close()
	s.bucketSeen.Store(true)
	data, err := readLimit(r, r.Size(), limit, key, s.display)
	if err != nil && !errors.Is(err, ErrTooLarge) {
		return nil, opErr("get", key, s.display, s.explainS3(err))
	}
	return data, err
}

func (r *retryStore) GetLimit(ctx context.Context, key string, limit int64) (data []byte, err error) {
	err = r.do(ctx, "get", key, func(ctx context.Context) error {
		data, err = GetLimit(ctx, r.s, key, limit)
		return err
	})
	return data, err
}
