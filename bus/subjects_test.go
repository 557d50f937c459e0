package bus

import (
	"strings"
	"testing"
)

func TestTokenRoundTrip(t *testing.T) {
	for _, id := range []string{"alice", "A-b_9", "bob.smith", "*", ">", "~x", "a b", "用户", "$SYS"} {
		tok := Token(id)
		if strings.ContainsAny(tok, ".*> \t\r\n") || tok == "" {
			t.Errorf("Token(%q) = %q is subject syntax", id, tok)
		}
		back, err := UserID(tok)
		if err != nil || back != id {
			t.Errorf("UserID(Token(%q)) = %q, %v", id, back, err)
		}
	}
	if Token("alice") != "alice" {
		t.Error("plain IDs must be used as they are")
	}
}

func TestUserIDRejectsNonCanonical(t *testing.T) {
	// "~YWxpY2U" decodes to "alice", which is plain: Token never makes it.
	for _, tok := range []string{"~YWxpY2U", "~!!", "a.b", ""} {
		if _, err := UserID(tok); err == nil {
			t.Errorf("UserID(%q) accepted", tok)
		}
	}
}

func FuzzToken(f *testing.F) {
	for _, s := range []string{"alice", "a.b", "*", ">", "~", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if id == "" {
			return
		}
		tok := Token(id)
		for i := 0; i < len(tok); i++ {
			c := tok[i]
			if c <= ' ' || c == '.' || c == '*' || c == '>' || c >= 0x7f {
				t.Fatalf("Token(%q) = %q has byte %q", id, tok, c)
			}
		}
		if back, err := UserID(tok); err != nil || back != id {
			t.Fatalf("round trip %q -> %q -> %q, %v", id, tok, back, err)
		}
	})
}
