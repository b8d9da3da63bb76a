// Package web serves Spotlight's page (GET / and its assets under /static/) and the timeline
// plots for scripts (GET /v1/plots/timeline.svg and .png). The page is plain HTML, CSS and
// JavaScript embedded in the binary: no CDN, no build step.
package web

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

//go:embed static
var files embed.FS

// Static is the page's files: index.html, app.js, style.css.
var Static = func() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err)
	}
	return sub
}()

// Handler serves the page at "/" (and "/index.html") and its assets at "/static/NAME".
func Handler() http.Handler {
	assets := http.StripPrefix("/static/", http.FileServer(http.FS(Static)))
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
			assets.ServeHTTP(w, r)
		default:
			writeError(w, http.StatusNotFound, "not_found", "no page at "+r.URL.Path)
		}
	})
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
