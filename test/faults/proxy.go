package faults

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy is a reverse proxy on 127.0.0.1 in front of an S3 server that can
// delay requests, answer them with 5xx errors, or forward them and then drop
// the answer (a lost acknowledgement). storefault does the same inside one
// process; the proxy does it to the real `tether sync` binary, which reaches
// the store over HTTP.
//
// It keeps the client's Host header, which the client's SigV4 signature
// covers, so the server accepts the forwarded requests.
type Proxy struct {
	URL string // http://127.0.0.1:PORT

	srv *http.Server
	ln  net.Listener
	rp  *httputil.ReverseProxy

	mu      sync.Mutex
	mode    proxyMode
	latency time.Duration
	lostP   float64       // share of write requests whose answer is dropped
	cleared chan struct{} // closed when the current fault clears
	rng     *rand.Rand

	delayed, failed, dropped atomic.Int64
}

type proxyMode int

const (
	passThrough proxyMode = iota
	modeLatency
	modeErrors
	modeLostAck
)

// NewProxy starts a proxy to the server at target (http://host:port).
func NewProxy(target string) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("proxy target %q is not an http://host:port URL", target)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy to %s: listen: %w", target, err)
	}
	p := &Proxy{URL: "http://" + ln.Addr().String(), ln: ln, cleared: make(chan struct{}), rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host = u.Scheme, u.Host
			r.Out.Host = r.In.Host
		},
		// The backend is down (killed): drop the client's connection, the
		// nearest a proxy can come to the connection refused it would get
		// without one. A 502 would be an answer the server never gave.
		ErrorHandler: func(http.ResponseWriter, *http.Request, error) { panic(http.ErrAbortHandler) },
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: discardLogger()}
	go p.srv.Serve(ln)
	return p, nil
}

// Close stops the proxy and drops its connections.
func (p *Proxy) Close() error {
	p.Clear()
	return p.srv.Close()
}

func (p *Proxy) set(m proxyMode, latency time.Duration, lostP float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode, p.latency, p.lostP = m, latency, lostP
	select {
	case <-p.cleared:
		p.cleared = make(chan struct{})
	default:
	}
}

// Latency delays every request by d before forwarding it, until Clear.
func (p *Proxy) Latency(d time.Duration) { p.set(modeLatency, d, 0) }

// Errors answers every request with 500 or 503 (at random, as S3's
// InternalError and SlowDown) without forwarding it, until Clear.
func (p *Proxy) Errors() { p.set(modeErrors, 0, 0) }

// LostAcks forwards every request, and for a share of the writes (PUT, POST,
// DELETE) drops the connection once the server has answered: the write is
// done but the client never learns it, until Clear.
func (p *Proxy) LostAcks(share float64) { p.set(modeLostAck, 0, share) }

// Clear ends the fault: requests pass through again, and those waiting out
// a latency go on at once.
func (p *Proxy) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = passThrough
	select {
	case <-p.cleared:
	default:
		close(p.cleared)
	}
}

// Counts says how many requests the proxy delayed, failed and dropped.
func (p *Proxy) Counts() (delayed, failed, dropped int64) {
	return p.delayed.Load(), p.failed.Load(), p.dropped.Load()
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	mode, latency, lostP, cleared := p.mode, p.latency, p.lostP, p.cleared
	roll := p.rng.Float64()
	code := http.StatusInternalServerError
	if p.rng.IntN(2) == 0 {
		code = http.StatusServiceUnavailable
	}
	p.mu.Unlock()
	switch mode {
	case modeLatency:
		p.delayed.Add(1)
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-cleared:
			t.Stop()
		case <-r.Context().Done():
			t.Stop()
			return
		}
	case modeErrors:
		p.failed.Add(1)
		// Read (a bounded part of) the body first, as a server does, so the
		// client is not cut off mid-upload; then answer as S3 does.
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 64<<20))
		s3Code := "InternalError"
		if code == http.StatusServiceUnavailable {
			s3Code = "SlowDown"
		}
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(code)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>injected by the fault campaign's proxy</Message><Resource>%s</Resource></Error>`, s3Code, r.URL.Path)
		return
	case modeLostAck:
		if (r.Method == http.MethodPut || r.Method == http.MethodPost || r.Method == http.MethodDelete) && roll < lostP {
			p.dropped.Add(1)
			// The server does the write; its answer goes nowhere, and the
			// client's connection is closed without one.
			p.rp.ServeHTTP(&discardWriter{h: http.Header{}}, r)
			panic(http.ErrAbortHandler)
		}
	}
	p.rp.ServeHTTP(w, r)
}

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}
