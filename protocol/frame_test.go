package protocol

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		code     Code // "" for success
	}{
		{"ping", `{"op":"ping"}`, ""},
		{"auth", `{"op":"auth","token":"t"}`, ""},
		{"send", `{"op":"send","ref":"r","to":"bob","body":{"a":[1,2]}}`, ""},
		{"send string body", `{"op":"send","to":"bob","body":"hi"}`, ""},
		{"sync", `{"op":"sync","after":12}`, ""},
		{"unknown fields ignored", `{"op":"ping","extra":{"x":1}}`, ""},
		{"leading space", " \t{\"op\":\"ping\"}", ""},
		{"empty", ``, CodeBadJSON},
		{"array", `[]`, CodeBadJSON},
		{"string", `"op"`, CodeBadJSON},
		{"truncated", `{"op":"ping"`, CodeBadJSON},
		{"two objects", `{"op":"ping"}{"op":"ping"}`, CodeBadJSON},
		{"no op", `{}`, CodeMissingField},
		{"auth without token", `{"op":"auth"}`, CodeMissingField},
		{"unknown", `{"op":"nope"}`, CodeUnknownOp},
		{"op not string", `{"op":1}`, CodeBadField},
		{"after float", `{"op":"sync","after":1.5}`, CodeBadField},
		{"body null", `{"op":"send","to":"b","body":null}`, CodeMissingField},
		{"bad to", `{"op":"send","to":"a>b c","body":1}`, CodeBadUser},
		{"bad from", `{"op":"send","from":" ","to":"b","body":1}`, CodeBadUser},
		{"bad utf8", "{\"op\":\"ping\",\"ref\":\"\xff\"}", CodeBadUTF8},
		{"ref del char", "{\"op\":\"ping\",\"ref\":\"\x7f\"}", CodeBadField},
		{"too large", `{"op":"ping","ref":"` + strings.Repeat("x", 100) + `"}`, CodeFrameTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Decode([]byte(tc.in), 100)
			switch {
			case tc.code == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.code == "" && f == nil:
				t.Fatal("nil frame")
			case tc.code != "" && (err == nil || err.Code != tc.code):
				t.Fatalf("got %v, want code %s", err, tc.code)
			case err != nil && err.Text == "":
				t.Fatal("error without text")
			}
		})
	}
}

func TestDecodeEchoesRef(t *testing.T) {
	_, err := Decode([]byte(`{"op":"send","ref":"r9","body":1}`), 1024)
	if err == nil || err.Ref != "r9" || err.Code != CodeMissingField {
		t.Fatalf("got %+v", err)
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	e := Envelope{ID: "id1", From: `we"ird\id`, To: "bob.smith", TS: 1234,
		Body: json.RawMessage("{\n  \"text\": \"line\\nbreak\"\n}")}
	data, err := AppendEnvelope(nil, &e)
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(string(data), "\n\r") {
		t.Fatalf("envelope has a raw newline: %s", data)
	}
	frame, err := MsgFrame(data, 42)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Op, ID, From, To string
		Seq              uint64
		TS               int64
		Body             struct{ Text string }
	}
	if err := json.Unmarshal(frame, &got); err != nil {
		t.Fatalf("msg frame %s: %v", frame, err)
	}
	if got.Op != "msg" || got.Seq != 42 || got.ID != "id1" || got.From != e.From || got.To != e.To ||
		got.TS != 1234 || got.Body.Text != "line\nbreak" {
		t.Fatalf("got %+v from %s", got, frame)
	}
	back, err := ParseEnvelope(data)
	if err != nil || back.ID != e.ID || back.From != e.From || back.TS != e.TS {
		t.Fatalf("parse: %+v %v", back, err)
	}
	if !EnvelopeHasID(data, "id1") || EnvelopeHasID(data, "id") || EnvelopeHasID([]byte(`{"id":"id1"}`), "id1") {
		t.Fatal("EnvelopeHasID")
	}
	if _, err := MsgFrame([]byte(`{"x":1}`), 1); err != ErrNotEnvelope {
		t.Fatalf("foreign data: %v", err)
	}
}

func TestCheckUserID(t *testing.T) {
	for _, ok := range []string{"alice", "bob.smith@example.com", "*", ">", "a.*.>", "用户",
		"x" + strings.Repeat("y", 127)} {
		if err := CheckUserID(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a b", "a\tb", "a\nb", "a\x00b", "a\u200bb", "a\u00a0b", "\xff",
		strings.Repeat("y", 129)} {
		if CheckUserID(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzDecode checks that no input panics and that every accepted frame
// is valid UTF-8 with the fields its op needs.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"op":"ping"}`, `{"op":"send","to":"b","body":[1]}`,
		`{"op":"sync","after":1}`, `{"op":"auth","token":"x"}`, "{\"op\":\"\xff\"}", `[`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := Decode(b, 4096)
		if err != nil {
			if err.Code == "" || err.Text == "" {
				t.Fatalf("error without code or text: %+v", err)
			}
			return
		}
		if fr.Op == OpSend && (CheckUserID(fr.To) != nil || len(fr.Body) == 0) {
			t.Fatalf("accepted bad send %+v", fr)
		}
		if fr.Op == OpSend {
			env := Envelope{ID: "i", From: "f", To: fr.To, Body: fr.Body}
			data, err := AppendEnvelope(nil, &env)
			if err != nil {
				t.Fatalf("envelope: %v", err)
			}
			if !json.Valid(data) {
				t.Fatalf("envelope is not JSON: %s", data)
			}
		}
	})
}
