package api

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/spotlight-lm/spotlight/lm"
	"github.com/spotlight-lm/spotlight/query"
)

// tokenRef names the token a job asks about, one of two ways: the character at Position of
// Text, or the generated token at index Generated of POST /v1/generate's continuation of
// Prompt at Temperature and Seed (the same request there gives the same text).
type tokenRef struct {
	Text        string
	Position    int
	Prompt      string
	Generated   int
	Temperature *float64
	Seed        uint64
}

func (r CounterfactualRequest) tokenRef() tokenRef {
	return tokenRef{r.Text, r.Position, r.Prompt, r.Generated, r.Temperature, r.Seed}
}

func (r InfluenceRequest) tokenRef() tokenRef {
	return tokenRef{r.Text, r.Position, r.Prompt, r.Generated, r.Temperature, r.Seed}
}

// resolveToken returns the text and position ref names. For a prompt it generates the
// continuation as /v1/generate does, up to the asked token, within a slot of the query pool
// (it is a query): the text is the prompt and the continuation, the position
// len(prompt)+generated.
func (s *Server) resolveToken(ref tokenRef) (string, int, error) {
	if ref.Prompt == "" {
		if ref.Generated != 0 || ref.Temperature != nil || ref.Seed != 0 {
			return "", 0, &Error{Status: http.StatusBadRequest, Code: CodeInvalidInput, Field: "prompt",
				Message: "generated, temperature and seed name a generated token: they need a prompt"}
		}
		if ref.Text == "" {
			return "", 0, &Error{Status: http.StatusBadRequest, Code: CodeInvalidInput, Field: "text",
				Message: "empty text: name the token by text and position, or by prompt and generated"}
		}
		return ref.Text, ref.Position, nil
	}
	if ref.Text != "" || ref.Position != 0 {
		return "", 0, &Error{Status: http.StatusBadRequest, Code: CodeInvalidInput, Field: "text",
			Message: "name the token by text and position or by prompt and generated, not both"}
	}
	if ref.Generated < 0 || ref.Generated >= query.MaxTokens {
		return "", 0, &Error{Status: http.StatusBadRequest, Code: CodeInvalidInput, Field: "generated",
			Message: "generated token " + strconv.Itoa(ref.Generated) + " outside 0.." + strconv.Itoa(query.MaxTokens-1)}
	}
	g := query.Request{Prompt: ref.Prompt, Tokens: ref.Generated + 1, Temperature: ref.Temperature, Seed: ref.Seed}
	sn := s.acquire()
	defer s.release(sn)
	if err := g.Normalize(sn.Model.Cfg); err != nil {
		return "", 0, err
	}
	ids, err := sn.Model.Tok.Encode(ref.Prompt)
	if err != nil {
		var unk *lm.UnknownCharsError
		if errors.As(err, &unk) {
			return "", 0, &Error{Status: http.StatusBadRequest, Code: CodeInvalidInput, Field: "prompt", Message: err.Error()}
		}
		return "", 0, err
	}
	release, err := s.acquireQuery()
	if err != nil {
		return "", 0, err
	}
	defer release()
	gen, err := sn.Model.Generate(ids, g.Tokens, *g.Temperature, g.Seed)
	if err != nil {
		return "", 0, err
	}
	return ref.Prompt + sn.Model.Tok.Decode(gen), len(ids) + ref.Generated, nil
}
