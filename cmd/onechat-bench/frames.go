package main

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// The server encodes every frame with "op" first (protocol/encode.go), so
// the hot frames (ack, msg) are recognised and picked apart with byte
// searches instead of encoding/json: client and node share two cores, and
// every cycle spent here is taken from the node. Anything the fast path
// does not recognise goes through encoding/json.
var (
	prefixAck  = []byte(`{"op":"ack",`)
	prefixMsg  = []byte(`{"op":"msg",`)
	prefixPong = []byte(`{"op":"pong"`)

	keyRef   = []byte(`"ref":"`)
	keyFrom  = []byte(`"from":"`)
	keyTo    = []byte(`"to":"`)
	keyBodyT = []byte(`"body":{"t":`)
	keyDup   = []byte(`"dup":true`)
)

// view is the part of a server frame this tool uses. The byte slices point
// into the frame and are valid only while it is being handled.
type view struct {
	op   string
	ref  []byte
	from []byte
	to   []byte
	t    int64 // body.t of a msg
	hasT bool
	dup  bool
	code string // error code
	text string // error text
	ping int64  // ok: ping interval in ms
}

// parseFrame returns the fields of f it can find.
func parseFrame(f []byte) view {
	switch {
	case bytes.HasPrefix(f, prefixAck):
		if ref := strField(f, keyRef); ref != nil {
			return view{op: "ack", ref: ref, dup: bytes.Contains(f, keyDup)}
		}
	case bytes.HasPrefix(f, prefixMsg):
		if v, ok := fastMsg(f); ok {
			return v
		}
	case bytes.HasPrefix(f, prefixPong):
		return view{op: "pong"}
	}
	return slowParse(f)
}

func fastMsg(f []byte) (view, bool) {
	from, to := strField(f, keyFrom), strField(f, keyTo)
	i := bytes.Index(f, keyBodyT)
	if from == nil || to == nil || i < 0 {
		return view{}, false
	}
	num := f[i+len(keyBodyT):]
	end := bytes.IndexByte(num, '}')
	if end < 0 {
		return view{}, false
	}
	t, err := strconv.ParseInt(string(num[:end]), 10, 64)
	if err != nil {
		return view{}, false
	}
	return view{op: "msg", from: from, to: to, t: t, hasT: true}, true
}

// strField returns the value of the first string field key (given with
// its opening quote) in f, or nil. It does not unescape: IDs and refs this
// tool makes hold no characters JSON escapes, and a value with a
// backslash is left to the slow path.
func strField(f, key []byte) []byte {
	i := bytes.Index(f, key)
	if i < 0 {
		return nil
	}
	rest := f[i+len(key):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 || bytes.IndexByte(rest[:end], '\\') >= 0 {
		return nil
	}
	return rest[:end]
}

// wireFrame is every field of interest, for encoding/json.
type wireFrame struct {
	Op    string          `json:"op"`
	Ref   string          `json:"ref"`
	From  string          `json:"from"`
	To    string          `json:"to"`
	Dup   bool            `json:"dup"`
	Code  string          `json:"code"`
	Error string          `json:"error"`
	Ping  int64           `json:"ping"`
	Body  json.RawMessage `json:"body"`
}

func slowParse(f []byte) view {
	var w wireFrame
	if err := json.Unmarshal(f, &w); err != nil {
		return view{op: "unparsable"}
	}
	v := view{op: w.Op, ref: []byte(w.Ref), from: []byte(w.From), to: []byte(w.To),
		dup: w.Dup, code: w.Code, text: w.Error, ping: w.Ping}
	var body struct {
		T *int64 `json:"t"`
	}
	if len(w.Body) > 0 && json.Unmarshal(w.Body, &body) == nil && body.T != nil {
		v.t, v.hasT = *body.T, true
	}
	return v
}

// appendSend appends a send frame. ref is letter+runID+"-"+n: the letter
// names the phase, and runID keeps refs unique across runs against the
// same node, whose dedup window would otherwise swallow repeats.
func appendSend(b []byte, letter byte, runID string, n uint64, to string, tNs int64) []byte {
	b = append(b, `{"op":"send","ref":"`...)
	b = append(b, letter)
	b = append(b, runID...)
	b = append(b, '-')
	b = strconv.AppendUint(b, n, 10)
	b = append(b, `","to":"`...)
	b = append(b, to...)
	b = append(b, `","body":{"t":`...)
	b = strconv.AppendInt(b, tNs, 10)
	return append(b, `}}`...)
}
