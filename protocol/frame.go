package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// Operations a client may send.
const (
	OpAuth = "auth"
	OpSend = "send"
	OpSync = "sync"
	OpPing = "ping"
)

// Operations the server sends.
const (
	OpOK     = "ok"
	OpAck    = "ack"
	OpMsg    = "msg"
	OpSynced = "synced"
	OpPong   = "pong"
	OpError  = "error"
)

// Limits on client-chosen fields.
const (
	MaxRefLen = 128 // bytes in a ref
)

// Frame is one decoded client frame. Which fields are meaningful depends on
// Op; Decode has already checked that the ones Op needs are present.
type Frame struct {
	Op    string          `json:"op"`
	Ref   string          `json:"ref,omitempty"`
	Token string          `json:"token,omitempty"`
	To    string          `json:"to,omitempty"`
	From  string          `json:"from,omitempty"` // services only
	Body  json.RawMessage `json:"body,omitempty"`
	After *uint64         `json:"after,omitempty"`
}

// Decode parses and validates one frame of at most maxSize bytes. The
// returned Frame does not alias b except through Body, which does: copy it
// before b is reused. An error is always an *Error with a catalogue code.
func Decode(b []byte, maxSize int) (*Frame, *Error) {
	if len(b) > maxSize {
		return nil, Errorf(CodeFrameTooLarge, "frame is %d bytes; the limit is %d", len(b), maxSize)
	}
	if !utf8.Valid(b) {
		return nil, Errorf(CodeBadUTF8, "frame is not valid UTF-8")
	}
	trimmed := bytes.TrimSpace(b)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, Errorf(CodeBadJSON, "frame must be one JSON object")
	}
	var f Frame
	if err := json.Unmarshal(trimmed, &f); err != nil {
		e := decodeError(err)
		// After a type error the rest of the object is still decoded, so
		// a valid ref can be echoed.
		if e.Code == CodeBadField && checkRef(f.Ref) == nil {
			e.Ref = f.Ref
		}
		return nil, e
	}
	// An invalid ref is not echoed: it is what is wrong.
	if err := checkRef(f.Ref); err != nil {
		return nil, err
	}
	if err := f.check(); err != nil {
		err.Ref = f.Ref
		return nil, err
	}
	return &f, nil
}

func decodeError(err error) *Error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return Errorf(CodeBadField, "field %q must be a JSON %s", te.Field, jsonKind(te.Field))
	}
	return Errorf(CodeBadJSON, "malformed JSON: %v", err)
}

func jsonKind(field string) string {
	if field == "after" {
		return "non-negative integer"
	}
	return "string"
}

func checkRef(ref string) *Error {
	if len(ref) > MaxRefLen {
		return Errorf(CodeBadField, "ref is longer than %d bytes", MaxRefLen)
	}
	if !printable(ref) {
		return Errorf(CodeBadField, "ref must not contain control characters")
	}
	return nil
}

// check validates the fields an op requires.
func (f *Frame) check() *Error {
	switch f.Op {
	case "":
		return Errorf(CodeMissingField, "missing field \"op\"")
	case OpAuth:
		if f.Token == "" {
			return Errorf(CodeMissingField, "auth needs field \"token\"")
		}
	case OpSend:
		return f.checkSend()
	case OpSync, OpPing:
	default:
		return Errorf(CodeUnknownOp, "unknown op %q", truncate(f.Op, 32))
	}
	return nil
}

func (f *Frame) checkSend() *Error {
	if f.To == "" {
		return Errorf(CodeMissingField, "send needs field \"to\"")
	}
	if len(f.Body) == 0 || bytes.Equal(f.Body, []byte("null")) {
		return Errorf(CodeMissingField, "send needs field \"body\" (any JSON value but null)")
	}
	if err := CheckUserID(f.To); err != nil {
		return Errorf(CodeBadUser, "to: %v", err)
	}
	if f.From != "" {
		if err := CheckUserID(f.From); err != nil {
			return Errorf(CodeBadUser, "from: %v", err)
		}
	}
	return nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
