package protocol

import "fmt"

// Code is a stable, machine-readable error code sent to clients in the
// "code" field of an error frame. Codes never change meaning once released.
type Code string

// The error catalogue. docs/protocol.md lists the same codes with the
// situations that produce them.
const (
	CodeBadJSON          Code = "bad_json"           // frame is not one JSON object
	CodeBadUTF8          Code = "bad_utf8"           // frame is not valid UTF-8
	CodeUnknownOp        Code = "unknown_op"         // op is not one the server knows
	CodeMissingField     Code = "missing_field"      // a required field is absent or null
	CodeBadField         Code = "bad_field"          // a field has the wrong type or an invalid value
	CodeFrameTooLarge    Code = "frame_too_large"    // frame exceeds the size limit
	CodeBadUser          Code = "bad_user"           // a user ID breaks the ID rules
	CodeAuthRequired     Code = "auth_required"      // an operation needs a prior auth
	CodeAuthFailed       Code = "auth_failed"        // token is malformed, forged or for another user
	CodeTokenExpired     Code = "token_expired"      // token has expired (also a close reason)
	CodeBadCursor        Code = "bad_cursor"         // sync cursor is ahead of the store
	CodeRateLimited      Code = "rate_limited"       // too many sends; retry later
	CodeTooManyConns     Code = "too_many_conns"     // the user has too many connections
	CodeUnavailable      Code = "unavailable"        // the store did not answer in time; retry
	CodeInternal         Code = "internal"           // unexpected server fault
	CodeSlowConsumer     Code = "slow_consumer"      // close reason: the client did not read
	CodeIdleTimeout      Code = "idle_timeout"       // close reason: no frame within the timeout
	CodeShuttingDown     Code = "shutting_down"      // close reason: the node is stopping
	CodeNotFound         Code = "not_found"          // HTTP: no such route
	CodeMethodNotAllowed Code = "method_not_allowed" // HTTP: wrong method for the route
)

// Codes lists the catalogue.
func Codes() []Code {
	return []Code{CodeBadJSON, CodeBadUTF8, CodeUnknownOp, CodeMissingField, CodeBadField,
		CodeFrameTooLarge, CodeBadUser, CodeAuthRequired, CodeAuthFailed, CodeTokenExpired,
		CodeBadCursor, CodeRateLimited, CodeTooManyConns, CodeUnavailable, CodeInternal,
		CodeSlowConsumer, CodeIdleTimeout, CodeShuttingDown, CodeNotFound, CodeMethodNotAllowed}
}

// Error is a protocol error: a code for programs and a text for people.
// Ref echoes the client's ref when the failing frame carried one.
type Error struct {
	Code Code
	Text string
	Ref  string
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Text }

// Errorf returns an *Error with the given code and formatted text.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Text: fmt.Sprintf(format, args...)}
}
