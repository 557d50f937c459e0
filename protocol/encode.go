package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"
)

// OK is the reply to a successful auth.
type OK struct {
	Op       string `json:"op"`
	Ref      string `json:"ref,omitempty"`
	User     string `json:"user"`
	Session  string `json:"session"`
	Node     string `json:"node"`
	Ping     int64  `json:"ping"`      // ms between client pings
	Timeout  int64  `json:"timeout"`   // ms of silence before the server closes
	MaxFrame int    `json:"max_frame"` // bytes
	Exp      int64  `json:"exp"`       // token expiry, unix seconds
	// Nodes are where to reconnect when this node goes away.
	Nodes []NodeAddr `json:"nodes,omitempty"`
}

// NodeAddr is where clients reach one node; empty fields are not served.
type NodeAddr struct {
	Name string `json:"name"`
	WS   string `json:"ws,omitempty"`   // WebSocket URL
	TCP  string `json:"tcp,omitempty"`  // host:port of the TCP protocol
	HTTP string `json:"http,omitempty"` // base URL of the HTTP API
}

// Ack confirms that a sent message is stored.
type Ack struct {
	Op  string `json:"op"`
	Ref string `json:"ref,omitempty"`
	ID  string `json:"id"`
	Seq uint64 `json:"seq"`
	TS  int64  `json:"ts"`
	Dup bool   `json:"dup,omitempty"`
}

// Synced ends a sync: every message after the old cursor up to Cursor has
// been sent. Expired says the store dropped messages after the old cursor,
// some of which may have been the user's. More (HTTP only) says another
// page follows.
type Synced struct {
	Op      string            `json:"op"`
	Ref     string            `json:"ref,omitempty"`
	Cursor  uint64            `json:"cursor"`
	Expired bool              `json:"expired"`
	Count   int               `json:"count"`
	More    bool              `json:"more,omitempty"`
	Msgs    []json.RawMessage `json:"msgs,omitempty"`
}

// Pong answers a ping.
type Pong struct {
	Op  string `json:"op"`
	Ref string `json:"ref,omitempty"`
}

// ErrorFrame is the wire form of an *Error.
type ErrorFrame struct {
	Op    string `json:"op"`
	Ref   string `json:"ref,omitempty"`
	Code  Code   `json:"code"`
	Error string `json:"error"`
}

// Encode marshals a reply struct. The structs above hold only strings and
// numbers, so marshalling cannot fail; a failure is a bug and panics.
func Encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("protocol: encode: " + err.Error())
	}
	return b
}

// EncodeError returns the error frame for e.
func EncodeError(e *Error) []byte {
	return Encode(ErrorFrame{Op: OpError, Ref: e.Ref, Code: e.Code, Error: e.Text})
}

const envelopePrefix = `{"op":"msg",`

// Envelope is the stored form of a message: a msg frame without its seq,
// which the store assigns. Every field is JSON-encoded once, when the
// message is accepted.
type Envelope struct {
	ID   string
	From string
	To   string
	TS   int64 // unix ms
	Body json.RawMessage
}

// AppendEnvelope appends e's stored form to dst. The body is compacted, so
// the result holds no raw newline and fits one TCP line.
func AppendEnvelope(dst []byte, e *Envelope) ([]byte, error) {
	dst = append(dst, envelopePrefix...)
	dst = append(dst, `"id":`...)
	dst = appendString(dst, e.ID)
	dst = append(dst, `,"from":`...)
	dst = appendString(dst, e.From)
	dst = append(dst, `,"to":`...)
	dst = appendString(dst, e.To)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, e.TS, 10)
	dst = append(dst, `,"body":`...)
	buf := bytes.NewBuffer(dst)
	if err := json.Compact(buf, e.Body); err != nil {
		return nil, err
	}
	dst = append(buf.Bytes(), '}')
	return dst, nil
}

// ErrNotEnvelope reports stored data that onechat did not write.
var ErrNotEnvelope = errors.New("protocol: stored data is not a message envelope")

// MsgFrame returns the msg frame for a stored envelope with sequence seq.
// It allocates a new slice; envelope is not retained.
func MsgFrame(envelope []byte, seq uint64) ([]byte, error) {
	if !bytes.HasPrefix(envelope, []byte(envelopePrefix)) {
		return nil, ErrNotEnvelope
	}
	rest := envelope[len(envelopePrefix):]
	b := make([]byte, 0, len(envelope)+28)
	b = append(b, envelopePrefix...)
	b = append(b, `"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, ',')
	return append(b, rest...), nil
}

// EnvelopeHasID reports whether a stored envelope is the one of message id,
// without decoding it: the id is always its first field.
func EnvelopeHasID(envelope []byte, id string) bool {
	rest, ok := bytes.CutPrefix(envelope, []byte(envelopePrefix+`"id":`))
	return ok && bytes.HasPrefix(rest, appendString(nil, id))
}

// ParseEnvelope decodes the fields of a stored envelope.
func ParseEnvelope(envelope []byte) (*Envelope, error) {
	if !bytes.HasPrefix(envelope, []byte(envelopePrefix)) {
		return nil, ErrNotEnvelope
	}
	var w struct {
		ID   string          `json:"id"`
		From string          `json:"from"`
		To   string          `json:"to"`
		TS   int64           `json:"ts"`
		Body json.RawMessage `json:"body"`
	}
	if err := json.Unmarshal(envelope, &w); err != nil {
		return nil, errors.Join(ErrNotEnvelope, err)
	}
	return &Envelope{ID: w.ID, From: w.From, To: w.To, TS: w.TS, Body: w.Body}, nil
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. s is valid UTF-8 (IDs and refs
// are checked on the way in); invalid bytes are replaced all the same.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}
