package events

import (
	"errors"
	"fmt"
)

// Kind classifies an error; the transports map each kind to a status in one place.
type Kind int

const (
	KindInternal        Kind = iota
	KindInvalid              // malformed or invalid input (HTTP 400)
	KindUnauthenticated      // no or bad credential (401)
	KindForbidden            // the caller may not do this (403)
	KindNotFound             // unknown hazard or file (404)
	KindConflict             // version or id conflict (409)
	KindTooLarge             // body or file too large (413)
	KindRule                 // a lifecycle rule refused the command (422)
	KindRateLimited          // too many requests (429)
	KindUnavailable          // the store cannot be reached (503)
)

// Error is the one error type of the domain: a kind, a stable code, a message and
// optionally the field it concerns.
type Error struct {
	Kind    Kind   `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
	Err     error  `json:"-"`
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s (%s)", e.Code, e.Message, e.Field)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an Error.
func Errorf(kind Kind, code, field, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

func invalid(field, format string, args ...any) *Error {
	return Errorf(KindInvalid, "invalid_"+fieldCode(field), field, format, args...)
}

func fieldCode(field string) string {
	if field == "" {
		return "input"
	}
	b := []byte(field)
	for i, c := range b {
		if c == '.' || c == '[' || c == ']' {
			b[i] = '_'
		}
	}
	return string(b)
}

func rule(code, format string, args ...any) *Error {
	return Errorf(KindRule, code, "", format, args...)
}

// ErrorOf returns err as an *Error, wrapping anything else as internal.
func ErrorOf(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Kind: KindInternal, Code: "internal", Message: "internal error", Err: err}
}

// KindOf reports the kind of err (KindInternal for foreign errors).
func KindOf(err error) Kind { return ErrorOf(err).Kind }
