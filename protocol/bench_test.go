package protocol

import (
	"encoding/json"
	"testing"
)

var sendFrame = []byte(`{"op":"send","ref":"r-123456","to":"bob",` +
	`"body":{"text":"hello there, how are you?","n":42}}`)

func BenchmarkDecodeSend(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(sendFrame)))
	for b.Loop() {
		if _, err := Decode(sendFrame, 64<<10); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEnvelopeAndFrame is the per-message encode work: one envelope
// when a message is accepted, one msg frame when it is delivered.
func BenchmarkEnvelopeAndFrame(b *testing.B) {
	e := Envelope{ID: "06h43yv0zz9z963m294cgn67sr", From: "alice", To: "bob", TS: 1796403323135,
		Body: json.RawMessage(`{"text":"hello there, how are you?","n":42}`)}
	b.ReportAllocs()
	buf := make([]byte, 0, 256)
	for b.Loop() {
		data, err := AppendEnvelope(buf[:0], &e)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := MsgFrame(data, 123456); err != nil {
			b.Fatal(err)
		}
	}
}
