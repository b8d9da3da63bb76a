// Package web serves Spotlight's page (GET / and its assets under /static/) and the timeline
// plots for scripts (GET /v1/plots/timeline.svg and .png). The page is plain HTML, CSS and
// JavaScript embedded in the binary: no CDN, no build step.
package web

import (
	"embed"
	"io"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
)

//go:embed static
var files embed.FS

// Static is the page's files: index.html, style.css and its scripts (util.js, charts.js,
// evidence.js, influence.js, app.js, loaded in that order).
var Static = func() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err)
	}
	return sub
}()

// Handler serves the page at "/" (and "/index.html") and its assets at "/static/NAME".
func Handler() http.Handler {
	index, err := fs.ReadFile(Static, "index.html")
	if err != nil {
		panic(err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here")
			return
		}
		// The page talks to the API it was served from; nothing else may frame or feed it.
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		switch {
		case r.URL.Path == "/" || r.URL.Path == "/index.html":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write(index)
		case strings.HasPrefix(r.URL.Path, "/static/"):
			serveAsset(w, r, strings.TrimPrefix(r.URL.Path, "/static/"))
		default:
			writeError(w, http.StatusNotFound, "not_found", "no page at "+r.URL.Path)
		}
	})
}

// serveAsset answers one of the page's files, or a JSON 404 for anything else: a name that
// is not a file here, not valid UTF-8, or not a clean relative path ("..", "//").
func serveAsset(w http.ResponseWriter, r *http.Request, name string) {
	var f fs.File
	st, err := fs.Stat(Static, name)
	if err == nil && st.Mode().IsRegular() && utf8.ValidString(name) && fs.ValidPath(name) {
		f, err = Static.Open(name)
	}
	rs, ok := f.(io.ReadSeeker)
	if err != nil || !ok {
		writeError(w, http.StatusNotFound, "not_found", "no file "+strconv.Quote(r.URL.Path))
		return
	}
	defer f.Close()
	http.ServeContent(w, r, name, st.ModTime(), rs)
}

// Register mounts the page on e: GET / and GET /static/*.
func Register(e *echo.Echo) {
	h := echo.WrapHandler(Handler())
	e.GET("/", h)
	e.HEAD("/", h)
	e.GET("/index.html", h)
	e.GET("/static/*", h)
	e.HEAD("/static/*", h)
}
