package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testFlags() (*flag.FlagSet, *string, *string, *string, *int) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	http := fs.String("http", ":8080", "")
	tcp := fs.String("tcp", ":7070", "")
	routes := fs.String("routes", "", "")
	burst := fs.Int("send-burst", 200, "")
	fs.String("config", "", "")
	return fs, http, tcp, routes, burst
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "onechat.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The command line beats the environment, which beats the file, which
// beats the default; a list becomes a comma-separated value.
func TestConfigFilePrecedence(t *testing.T) {
	fs, http, tcp, routes, burst := testFlags()
	path := writeConfig(t, "http: 127.0.0.1:1\ntcp: 127.0.0.1:2\n"+
		"routes: [nats://a:6222, nats://b:6222]\nsend-burst: 7\n")
	t.Setenv("ONECHAT_TCP", "127.0.0.1:3")
	if err := fs.Parse([]string{"--http", "127.0.0.1:4"}); err != nil {
		t.Fatal(err)
	}
	if err := applyEnv(fs); err != nil {
		t.Fatal(err)
	}
	if err := applyConfigFile(fs, path); err != nil {
		t.Fatal(err)
	}
	if *http != "127.0.0.1:4" || *tcp != "127.0.0.1:3" ||
		*routes != "nats://a:6222,nats://b:6222" || *burst != 7 {
		t.Fatalf("http %q tcp %q routes %q burst %d", *http, *tcp, *routes, *burst)
	}
}

func TestConfigFileErrors(t *testing.T) {
	for body, want := range map[string]string{
		"htpp: :1\n":             `unknown setting "htpp"`,
		"send-burst: many\n":     "send-burst",
		"http: {a: 1}\n":         "not a map",
		"http: [unclosed\n":      "onechat.yaml",
		"config: other.yaml\n":   `unknown setting "config"`,
		"routes:\n  - {a: 1}\n":  "not a map",
		"send-burst: [1, 2]\n":   "send-burst",
		"http: \"\"\ntcp: [] \n": "",
	} {
		fs, _, _, _, _ := testFlags()
		err := applyConfigFile(fs, writeConfig(t, body))
		if want == "" {
			if err != nil {
				t.Errorf("%q: %v", body, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want it to mention %q", body, err, want)
		}
	}
	fs, _, _, _, _ := testFlags()
	if err := applyConfigFile(fs, "/nonexistent/onechat.yaml"); err == nil {
		t.Error("a missing file was accepted")
	}
}
