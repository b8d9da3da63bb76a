package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spotlight-lm/spotlight/datadir"
)

// ServerFile is the file a running server keeps in its data directory, so that the other
// commands find it there instead of failing on the directory's lock.
const ServerFile = "serve.json"

// serverRecord is the content of ServerFile.
type serverRecord struct {
	URL  string `json:"url"` // where a client on this machine reaches it
	PID  int    `json:"pid"`
	Auth bool   `json:"auth"` // requests need the bearer token
}

// writeServerRecord records the server listening on addr in data (written whole, then
// renamed, so a reader never sees half of it) and returns the function that removes it.
func writeServerRecord(data string, addr net.Addr, auth bool) (remove func(), err error) {
	b, err := json.Marshal(serverRecord{URL: clientURL(addr), PID: os.Getpid(), Auth: auth})
	if err != nil {
		return nil, err
	}
	path := filepath.Join(data, ServerFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	return func() { os.Remove(path) }, nil
}

// clientURL is the URL of a listener for a client on this machine: an unspecified host
// (0.0.0.0, ::) is reached on loopback.
func clientURL(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// runningServer is a live server found through its ServerFile.
type runningServer struct {
	serverRecord
	data, token string
	client      *http.Client
}

// findServer returns the live server that holds data, or nil when its ServerFile is missing,
// unreadable or stale (its process gone, or not answering /healthz).
func findServer(data, token string) *runningServer {
	b, err := os.ReadFile(filepath.Join(data, ServerFile))
	if err != nil {
		return nil
	}
	var rec serverRecord
	if json.Unmarshal(b, &rec) != nil || rec.PID <= 0 || rec.URL == "" {
		return nil
	}
	if err := syscall.Kill(rec.PID, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return nil
	}
	s := &runningServer{serverRecord: rec, data: data, token: token, client: &http.Client{Timeout: 10 * time.Second}}
	resp, err := s.client.Get(rec.URL + "/healthz")
	if err != nil {
		return nil
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	s.client.Timeout = 5 * time.Minute // a long generation over all layers
	return s
}

// lockedError is the error for a command that needs data's lock while another process
// holds it: with a live server, what to run instead (alt, "" for none); otherwise who
// else may hold it.
func lockedError(data string, srv *runningServer, alt string) error {
	if srv == nil {
		return fmt.Errorf("%s is in use by another process (a train, or a serve that is still training); wait for it to finish or stop it, then run this again", data)
	}
	msg := fmt.Sprintf("%s is held by the server at %s (pid %d)", data, srv.URL, srv.PID)
	if alt != "" {
		msg += "; " + alt
	}
	return fmt.Errorf("%s, or stop it (kill -INT %d) and run this again", msg, srv.PID)
}

// tokenOr is the --token flag, or $SPOTLIGHT_TOKEN when it is empty.
func tokenOr(flag string) string {
	if flag != "" {
		return flag
	}
	return os.Getenv("SPOTLIGHT_TOKEN")
}

// isLocked reports whether err is a data directory held by another process.
func isLocked(err error) bool { return errors.Is(err, datadir.ErrLocked) }

// do sends one request to the server and decodes a 2xx JSON answer into out (raw, when
// not nil, receives the body as it came). An API error is one line with its message.
func (s *runningServer) do(method, path string, body any, out any, raw *[]byte) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("server at %s: %w", s.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("server at %s: %w", s.URL, err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return fmt.Errorf("the server at %s needs its token: set SPOTLIGHT_TOKEN or --token", s.URL)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct{ Message string } `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
			return errors.New(e.Error.Message)
		}
		return fmt.Errorf("server at %s: %s %s: %s", s.URL, method, path, strings.TrimSpace(string(b)))
	}
	if raw != nil {
		*raw = b
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// note tells the user on stderr that the answer came from the server.
func (s *runningServer) note(what string) {
	fmt.Fprintf(os.Stderr, "%s is held by the server at %s (pid %d): %s through its API\n", s.data, s.URL, s.PID, what)
}
