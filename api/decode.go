package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"

	"github.com/labstack/echo/v4"
)

// decodeJSON reads exactly one JSON object into v, a pointer to a struct with json tags:
// field names must match a tag exactly and appear once; unknown or repeated fields,
// trailing data, wrong types and syntax errors are 400s that name the problem.
func decodeJSON(c echo.Context, v any) error {
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		return err // *http.MaxBytesError: 413
	}
	if err := checkFields(body, v); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errorf(http.StatusBadRequest, CodeBadRequest, "unexpected data after the JSON object")
	}
	return nil
}

// checkFields walks the top-level object of body and refuses a name that is not exactly
// one of v's json tags (encoding/json would match it case-insensitively) or that comes
// twice (encoding/json would keep the last). A body that is not an object is left to the
// decoder, whose errors say what is wrong with it.
func checkFields(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	names := jsonNames(reflect.TypeOf(v).Elem())
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return jsonError(unexpectedEOF(err))
		}
		name, _ := tok.(string)
		switch {
		case !names[name]:
			return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Field: name,
				Message: fmt.Sprintf("unknown field %q", name)}
		case seen[name]:
			return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Field: name,
				Message: fmt.Sprintf("duplicate field %q", name)}
		}
		seen[name] = true
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return jsonError(unexpectedEOF(err))
		}
	}
	return nil // the closing brace and what follows are the decoder's to check
}

// unexpectedEOF turns io.EOF inside the object into io.ErrUnexpectedEOF: the body ended
// early, it was not empty.
func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// jsonNames is the set of json field names of struct type t.
func jsonNames(t reflect.Type) map[string]bool {
	names := map[string]bool{}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names[name] = true
	}
	return names
}

func jsonError(err error) error {
	var (
		syn  *json.SyntaxError
		typ  *json.UnmarshalTypeError
		maxb *http.MaxBytesError
	)
	switch {
	case errors.As(err, &maxb):
		return err
	case errors.Is(err, io.EOF):
		return errorf(http.StatusBadRequest, CodeBadRequest, "empty request body: send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errorf(http.StatusBadRequest, CodeBadRequest, "malformed JSON: the body ends early")
	case errors.As(err, &syn):
		return errorf(http.StatusBadRequest, CodeBadRequest, "malformed JSON at byte %d: %s", syn.Offset, syn.Error())
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return errorf(http.StatusBadRequest, CodeBadRequest, "the body must be a JSON object, not %s", typ.Value)
		}
		return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Field: field,
			Message: fmt.Sprintf("field %q: %s is not a valid %s", field, typ.Value, typ.Type)}
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Field: name,
			Message: fmt.Sprintf("unknown field %q", name)}
	}
	return errorf(http.StatusBadRequest, CodeBadRequest, "malformed JSON: %s", err.Error())
}
