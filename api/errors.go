package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/spotlight-lm/spotlight/lm"
	"github.com/spotlight-lm/spotlight/query"
)

// Error codes: the stable, machine-readable part of every error response.
const (
	CodeBadRequest   = "bad_request"   // malformed JSON, unknown fields, wrong types, trailing data
	CodeInvalidInput = "invalid_input" // well-formed but out of range, unknown characters or layers
	CodeUnauthorized = "unauthorized"  // missing or wrong bearer token
	CodeForbidden    = "forbidden"     // the server's configuration refuses this request
	CodeNotFound     = "not_found"     // unknown route or step
	CodeMethod       = "method_not_allowed"
	CodeTooLarge     = "body_too_large"
	CodeBusy         = "busy"     // the query pool is full; retry after Retry-After seconds
	CodeConflict     = "conflict" // training already running
	CodeUnavailable  = "unavailable"
	CodeTimeout      = "timeout"
	CodeInternal     = "internal"
	// CodeAnswerTooLarge: the answer would be over the server's limit (--max-answer-bytes);
	// the message gives the limit and the estimate.
	CodeAnswerTooLarge = "answer_too_large"
	CodeShuttingDown   = "shutting_down" // the server stopped while the request ran
	// CodeMemoryDamaged: a requested layer's memory failed its checksums (the message names
	// the layer and the step); the other layers still answer.
	CodeMemoryDamaged = "memory_damaged"
)

// errShutdown is the cause with which Shutdown cancels the requests still running after
// its grace period.
var errShutdown = errors.New("server shutting down")

func errShuttingDown() *Error {
	return errorf(http.StatusServiceUnavailable, CodeShuttingDown, "the server is shutting down: retry once it is back")
}

// Error is an error with an HTTP status and a code; the message is shown to the caller.
type Error struct {
	Status  int
	Code    string
	Message string
	Field   string // the request field at fault, when there is one
}

func (e *Error) Error() string { return e.Message }

// errorf builds an *Error.
func errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// errorBody is the JSON of every error response.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// toError maps any error to an *Error: the one place that decides statuses.
func toError(err error) *Error {
	var (
		e    *Error
		he   *echo.HTTPError
		in   *query.InputError
		unk  *lm.UnknownCharsError
		maxb *http.MaxBytesError
		big  *query.TooLargeError
		dmg  *query.DamagedError
	)
	switch {
	case errors.As(err, &e):
		return e
	case errors.As(err, &maxb):
		return errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, "request body over %d bytes", maxb.Limit)
	case errors.As(err, &dmg):
		return errorf(http.StatusInternalServerError, CodeMemoryDamaged, "%s", dmg.Error())
	case errors.As(err, &big):
		return errorf(http.StatusUnprocessableEntity, CodeAnswerTooLarge, "%s", big.Error())
	case errors.As(err, &in):
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidInput, Message: in.Error(), Field: in.Field}
	case errors.As(err, &unk):
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidInput, Message: unk.Error()}
	case errors.As(err, &he):
		return fromEcho(he)
	case errors.Is(err, context.DeadlineExceeded):
		return errorf(http.StatusServiceUnavailable, CodeTimeout, "the query took too long")
	case errors.Is(err, context.Canceled):
		return errorf(http.StatusServiceUnavailable, CodeUnavailable, "the request was cancelled")
	}
	return errorf(http.StatusInternalServerError, CodeInternal, "internal error")
}

func fromEcho(he *echo.HTTPError) *Error {
	codes := map[int]string{
		http.StatusNotFound: CodeNotFound, http.StatusMethodNotAllowed: CodeMethod,
		http.StatusRequestEntityTooLarge: CodeTooLarge, http.StatusUnauthorized: CodeUnauthorized,
		http.StatusServiceUnavailable: CodeUnavailable, http.StatusBadRequest: CodeBadRequest,
	}
	code, ok := codes[he.Code]
	if !ok {
		code = strings.ToLower(strings.ReplaceAll(http.StatusText(he.Code), " ", "_"))
	}
	msg := fmt.Sprint(he.Message)
	if he.Code == http.StatusNotFound {
		msg = "no such route"
	}
	return errorf(he.Code, code, "%s", msg)
}

// handleError is the echo HTTPErrorHandler: JSON body, status from toError, internal
// details logged rather than shown.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	e := toError(err)
	if e.Status >= 500 {
		s.log.Error("request failed", "method", c.Request().Method, "path", c.Path(), "err", err)
	}
	if e.Status == http.StatusTooManyRequests {
		c.Response().Header().Set("Retry-After", "1")
	}
	body := errorBody{Error: errorDetail{Code: e.Code, Message: e.Message, Field: e.Field}}
	if werr := c.JSON(e.Status, body); werr != nil {
		s.log.Warn("writing error response", "err", werr)
	}
}
