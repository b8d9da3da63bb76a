package api

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/spotlight-lm/spotlight/query"
)

// An answer's format: JSON by default, or one row per token × layer × training token as
// CSV or JSON lines (query.ExportColumns), chosen by ?format= or else the Accept header, so
// an answer goes straight into pandas or a spreadsheet.
type format struct {
	name, mime string
	encode     func(*query.Answer) ([]byte, error)
}

var formats = []format{
	{"json", echo.MIMEApplicationJSON, func(a *query.Answer) ([]byte, error) {
		b, err := json.Marshal(a)
		return append(b, '\n'), err
	}},
	{"csv", "text/csv; charset=utf-8", rows(query.WriteCSV)},
	{"jsonl", "application/x-ndjson", rows(query.WriteJSONL)},
}

func rows(write func(w io.Writer, a *query.Answer) error) func(*query.Answer) ([]byte, error) {
	return func(a *query.Answer) ([]byte, error) {
		var b bytes.Buffer
		err := write(&b, a)
		return b.Bytes(), err
	}
}

// answerFormat reads the format a request asks for; an unknown ?format= is a 400, an
// Accept header that names none of them gets JSON.
func answerFormat(c echo.Context) (format, error) {
	if name := c.QueryParam("format"); name != "" {
		for _, f := range formats {
			if f.name == name {
				return f, nil
			}
		}
		return format{}, &Error{Status: http.StatusBadRequest, Code: CodeInvalidInput, Field: "format",
			Message: "format: want json, csv or jsonl, got " + strconv.Quote(name)}
	}
	for _, part := range strings.Split(c.Request().Header.Get(echo.HeaderAccept), ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		for _, f := range formats {
			if want, _, _ := mime.ParseMediaType(f.mime); want == mt {
				return f, nil
			}
		}
	}
	return formats[0], nil
}
