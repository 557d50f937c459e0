package auth

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func TestSignVerify(t *testing.T) {
	tok, err := Sign(secret, "bob.smith", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewVerifier(secret).Verify(tok)
	if err != nil || c.User != "bob.smith" || time.Until(c.Expiry) < 59*time.Minute {
		t.Fatalf("verify: %+v %v", c, err)
	}
	other := NewVerifier([]byte("another-secret-another-secret-12"))
	if _, err := other.Verify(tok); !errors.Is(err, ErrInvalid) {
		t.Fatalf("other secret: %v", err)
	}
	v := NewVerifier(secret)
	v.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if _, err := v.Verify(tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: %v", err)
	}
	if _, err := Sign(secret, "a b", time.Hour); err == nil {
		t.Fatal("signed a bad user ID")
	}
}

func TestLoadSecretGeneratesOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	var wg sync.WaitGroup
	got := make([][]byte, 8)
	for i := range got {
		wg.Go(func() {
			s, err := LoadSecret("", dir)
			if err != nil {
				t.Error(err)
			}
			got[i] = s
		})
	}
	wg.Wait()
	for _, s := range got[1:] {
		if string(s) != string(got[0]) {
			t.Fatal("concurrent first loads disagree on the secret")
		}
	}
	st, err := os.Stat(filepath.Join(dir, SecretFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("secret file mode %v, want 0600", st.Mode().Perm())
	}
	again, err := LoadSecret("", dir)
	if err != nil || string(again) != string(got[0]) {
		t.Fatalf("reload: %v", err)
	}
	const explicit = "an-explicit-secret-of-enough-length"
	if s, _ := LoadSecret(explicit, dir); string(s) != explicit {
		t.Fatal("explicit secret not used")
	}
	if _, err := LoadSecret("short", dir); err == nil {
		t.Fatal("short secret accepted")
	}
}

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		in, tok string
		ok      bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER  abc ", "abc", true},
		{"Basic abc", "", false},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"", "", false},
	} {
		if tok, ok := BearerToken(tc.in); tok != tc.tok || ok != tc.ok {
			t.Errorf("%q: got %q %v", tc.in, tok, ok)
		}
	}
}
