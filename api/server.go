// Package api serves a Spotlight data directory over HTTP with echo: the model, its
// memory, per-token attribution, and live training. It is the only package that imports
// echo.
package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/spotlight-lm/spotlight/api/web"
	"github.com/spotlight-lm/spotlight/datadir"
)

// Defaults of Options.
const (
	DefaultAddr         = "127.0.0.1:8080"
	DefaultBodyLimit    = 64 << 10
	DefaultMaxQueries   = 4
	DefaultQueryTimeout = 60 * time.Second
	DefaultReadTimeout  = 10 * time.Second
	DefaultWriteTimeout = 90 * time.Second
	// DefaultMaxAnswerBytes bounds one generate/attribute answer (and a plot's generation):
	// the default request for 1024 tokens fits on the tiny preset, the largest options do not.
	DefaultMaxAnswerBytes = 64 << 20
)

// shutdownDrain is how long Shutdown waits, after cancelling the requests still running
// at its deadline, for them to send their 503 before it closes their connections.
const shutdownDrain = 5 * time.Second

// writeErrorKey is where a handler records, in its echo context, a response write that
// failed part way (the request log line reports it).
const writeErrorKey = "spotlight.write_error"

// Options configure a Server. New fills zero fields from the Default* constants.
type Options struct {
	Token        string        // bearer token; empty means no auth (loopback only)
	BodyLimit    int64         // bytes per request body
	MaxQueries   int           // generate/attribute requests running at once; more get 429
	QueryTimeout time.Duration // per generate/attribute request
	// MaxAnswerBytes bounds the JSON of one answer: a request whose estimate is over it gets
	// 422 answer_too_large before any work, as does an answer that comes out over it.
	MaxAnswerBytes int64
	ReadTimeout    time.Duration
	WriteTimeout   time.Duration
	Logger         *slog.Logger
	Web            http.Handler // serves GET / (the web page), when set
}

// Server is the HTTP API over one open data directory.
type Server struct {
	opts     Options
	dir      *datadir.Dir
	echo     *echo.Echo
	handler  http.Handler // echo, answering HEAD as GET
	http     *http.Server
	log      *slog.Logger
	corpus   []int32       // the tokenised corpus, for /v1/steps
	sem      chan struct{} // the query pool
	loopback atomic.Bool   // the listener is on a loopback address (set by Listen and Serve)
	inflight atomic.Int64  // requests being handled

	// base is every request's parent context; Shutdown cancels it (cause errShutdown) when
	// requests are still running at its deadline.
	base  context.Context
	abort context.CancelCauseFunc

	snapMu sync.Mutex
	snap   *snapshot

	train     training
	cf        jobs[CounterfactualJob]
	inf       jobs[InfluenceJob]
	committed chan struct{} // a commit happened: rebuild the snapshot
	stop      chan struct{}
	bg        sync.WaitGroup
	closeOnce sync.Once
}

// New loads the last checkpoint of dir and its memory and returns a Server ready to Serve.
// The caller keeps ownership of dir and closes it after Close.
func New(dir *datadir.Dir, opts Options) (*Server, error) {
	fillDefaults(&opts)
	s := &Server{opts: opts, dir: dir, log: opts.Logger,
		sem:       make(chan struct{}, opts.MaxQueries),
		committed: make(chan struct{}, 1), stop: make(chan struct{})}
	snap, err := s.loadSnapshot(nil)
	if err != nil {
		return nil, err
	}
	s.snap, s.corpus = snap, snap.Model.Tok.EncodeCorpus(string(dir.Corpus()))
	s.echo = s.routes()
	s.handler = headAsGet(s.echo)
	s.base, s.abort = context.WithCancelCause(context.Background())
	s.http = &http.Server{Handler: s.handler, ReadHeaderTimeout: opts.ReadTimeout,
		ReadTimeout: opts.ReadTimeout, WriteTimeout: opts.WriteTimeout, IdleTimeout: 2 * time.Minute,
		BaseContext: func(net.Listener) context.Context { return s.base }}
	s.bg.Add(2)
	go s.refresher()
	go s.checkMemory()
	return s, nil
}

// checkMemory reads every committed step of the segment files once, in the background:
// opening checks only the last step, and damage in the middle of one would otherwise be
// answered from. A damaged layer is then refused (query.DamagedError) while the others
// answer.
func (s *Server) checkMemory() {
	defer s.bg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	t0 := time.Now()
	err := s.dir.CheckSegments(ctx)
	switch {
	case ctx.Err() != nil:
	case err != nil:
		s.log.Error("memory check: a layer's segment files are damaged and it is refused until they are written again (stop the server, then spotlight verify --repair)", "err", err)
	default:
		s.log.Info("memory check: every committed step matches its checksums", "seconds", time.Since(t0).Round(time.Millisecond).Seconds())
	}
}

func fillDefaults(o *Options) {
	if o.BodyLimit <= 0 {
		o.BodyLimit = DefaultBodyLimit
	}
	if o.MaxQueries <= 0 {
		o.MaxQueries = DefaultMaxQueries
	}
	if o.MaxAnswerBytes <= 0 {
		o.MaxAnswerBytes = DefaultMaxAnswerBytes
	}
	if o.QueryTimeout <= 0 {
		o.QueryTimeout = DefaultQueryTimeout
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = DefaultReadTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.Use(s.logRequests, s.recoverPanics, s.limitBody, s.authenticate)
	e.GET("/healthz", s.healthz)
	e.GET("/openapi.json", s.openAPI)
	e.GET("/v1/model", s.getModel)
	e.POST("/v1/generate", s.generate, s.requireJSON)
	e.POST("/v1/attribute", s.attribute, s.requireJSON)
	e.GET("/v1/steps/:step", s.getStep)
	e.GET("/v1/train", s.getTrain)
	e.POST("/v1/train", s.postTrain, s.requireJSON)
	e.POST("/v1/counterfactual", s.postCounterfactual, s.requireJSON)
	e.GET("/v1/counterfactual/:id", s.cf.get)
	e.DELETE("/v1/counterfactual/:id", s.cf.delete)
	e.POST("/v1/influence", s.postInfluence, s.requireJSON)
	e.GET("/v1/influence/:id", s.inf.get)
	e.DELETE("/v1/influence/:id", s.inf.delete)
	web.RegisterPlots(e, s.plotGenerate)
	if s.opts.Web != nil {
		page := echo.WrapHandler(s.opts.Web)
		e.GET("/", page)
		e.GET("/index.html", page)
		e.GET("/static/*", page)
	}
	return e
}

// Handler is the server's http.Handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.handler }

// headAsGet answers HEAD wherever GET is allowed: it routes a HEAD request as a GET, and
// net/http, which still sees the HEAD it received, sends the headers without the body.
func headAsGet(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			r = r.WithContext(r.Context())
			r.Method = http.MethodGet
		}
		next.ServeHTTP(w, r)
	})
}

// CheckAddr refuses a non-loopback address without a token (call it before anything slow).
func CheckAddr(addr, token string) error {
	if token == "" && !isLoopback(addr) {
		return fmt.Errorf("refusing to serve %s without a token: set --token or SPOTLIGHT_TOKEN, or bind 127.0.0.1", addr)
	}
	return nil
}

// Listen opens addr, refusing a non-loopback address when there is no token.
func (s *Server) Listen(addr string) (net.Listener, error) {
	if err := CheckAddr(addr, s.opts.Token); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		s.loopback.Store(isLoopback(ln.Addr().String()))
	}
	return ln, err
}

// Serve answers requests on ln until Shutdown. It returns nil after a clean shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.loopback.Store(isLoopback(ln.Addr().String()))
	if s.opts.Token == "" && !s.loopback.Load() {
		return fmt.Errorf("refusing to serve %s without a token", ln.Addr())
	}
	if err := s.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops accepting requests, lets running ones finish (until ctx ends), then
// checkpoints any training run and releases the model and memory. Requests still running
// when ctx ends are cancelled: their queries stop and answer 503 shutting_down, and
// connections still open a few seconds later are closed. It returns nil when every request
// finished in time, else an error that says how many did not.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if err != nil {
		running := s.inflight.Load()
		s.abort(errShutdown)
		drain, cancel := context.WithTimeout(context.Background(), shutdownDrain)
		derr := s.http.Shutdown(drain)
		cancel()
		err = fmt.Errorf("shutdown: %d requests still running after the grace period were cancelled (answered 503 shutting_down)", running)
		if errors.Is(derr, context.DeadlineExceeded) {
			err = fmt.Errorf("shutdown: %d requests still running after the grace period were cancelled; %d connections still writing %s later were closed",
				running, s.inflight.Load(), shutdownDrain)
			s.http.Close()
		}
	}
	s.Close()
	return err
}

// Close stops training (committing a checkpoint) and background work and frees the
// current snapshot. It does not close the data directory.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.train.mu.Lock()
		close(s.stop)
		s.train.mu.Unlock()
		s.stopTraining()
		s.cf.stop()
		s.inf.stop()
		s.bg.Wait()
		s.snapMu.Lock()
		sn := s.snap
		s.snapMu.Unlock()
		if sn != nil {
			s.swap(nil)
		}
	})
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Middleware.

// logRequests logs every request once it is answered; a response whose write failed part
// way is logged as a warning with the bytes written and the error.
func (s *Server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		s.inflight.Add(1)
		defer s.inflight.Add(-1)
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		r := c.Response()
		attrs := []any{"method", c.Request().Method, "path", c.Request().URL.Path,
			"status", r.Status, "bytes", r.Size, "ms", time.Since(start).Milliseconds(), "remote", c.RealIP()}
		if werr, ok := c.Get(writeErrorKey).(error); ok {
			s.log.Warn("request: response not fully written", append(attrs, "err", werr.Error())...)
			return nil
		}
		s.log.Info("request", attrs...)
		return nil
	}
}

func (s *Server) recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("panic", "path", c.Request().URL.Path, "panic", r)
				err = errorf(http.StatusInternalServerError, CodeInternal, "internal error")
			}
		}()
		return next(c)
	}
}

func (s *Server) limitBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.ContentLength > s.opts.BodyLimit {
			return errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, "request body over %d bytes", s.opts.BodyLimit)
		}
		r.Body = http.MaxBytesReader(c.Response(), r.Body, s.opts.BodyLimit)
		return next(c)
	}
}

// authenticate requires the bearer token on everything but /healthz and the page's own
// files, /, /index.html and /static/* (they hold no data; the page asks for the token and
// sends it with every API call). The scheme name is case-insensitive, as HTTP auth schemes
// are. Without a token (a loopback server) it refuses foreign Host headers, so a web page
// cannot reach the API through DNS rebinding.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		path := c.Request().URL.Path
		public := path == "/healthz" || (s.opts.Token != "" && c.Request().Method == http.MethodGet &&
			(path == "/" || path == "/index.html" || strings.HasPrefix(path, "/static/")))
		if public {
			return next(c)
		}
		if s.opts.Token == "" {
			if !isLoopback(c.Request().Host) {
				return errorf(http.StatusForbidden, CodeForbidden, "host %q is not a loopback name", c.Request().Host)
			}
			return next(c)
		}
		scheme, got, _ := strings.Cut(c.Request().Header.Get("Authorization"), " ")
		got = strings.TrimLeft(got, " ")
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(got), []byte(s.opts.Token)) != 1 {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="spotlight"`)
			return errorf(http.StatusUnauthorized, CodeUnauthorized, "missing or wrong bearer token")
		}
		return next(c)
	}
}

// requireJSON refuses bodies that are not declared JSON: a cross-site form cannot send
// one without a CORS preflight, which this server never grants.
func (s *Server) requireJSON(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ct := c.Request().Header.Get("Content-Type")
		if mt, _, _ := strings.Cut(ct, ";"); strings.TrimSpace(strings.ToLower(mt)) != "application/json" {
			return errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "send Content-Type: application/json")
		}
		return next(c)
	}
}

// waitQuery waits for a slot of the query pool, for background jobs' short queries.
func (s *Server) waitQuery(ctx context.Context) (release func(), err error) {
	select {
	case s.sem <- struct{}{}:
		return func() { <-s.sem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// acquireQuery takes a slot of the query pool or fails with 429.
func (s *Server) acquireQuery() (release func(), err error) {
	select {
	case s.sem <- struct{}{}:
		return func() { <-s.sem }, nil
	default:
		return nil, errorf(http.StatusTooManyRequests, CodeBusy, "%d queries are running; retry shortly", cap(s.sem))
	}
}
