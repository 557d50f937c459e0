package main

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/onechat/onechat/auth"
)

// smokeCmd sends one message between two fresh users through a running
// node's HTTP API and reads it back from the recipient's inbox. It is the
// chart's `helm test`, and works against any node.
func smokeCmd(args []string) error {
	fs := flag.NewFlagSet("onechat smoke", flag.ContinueOnError)
	url := fs.String("url", "http://127.0.0.1:8080", "base URL of a node's HTTP API")
	secret := fs.String("jwt-secret", "", "the nodes' HS256 secret (required)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to keep trying")
	fs.Usage = usage(fs, "onechat smoke [flags]")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := applyEnv(fs); err != nil {
		return err
	}
	if *secret == "" {
		return errors.New("smoke: --jwt-secret (or ONECHAT_JWT_SECRET) is required")
	}
	tag := strings.ToLower(rand.Text()[:10])
	from, to := "smoke-"+tag+"-a", "smoke-"+tag+"-b"
	deadline := time.Now().Add(*timeout)
	var err error
	for {
		var id string
		if id, err = smokeOnce(*url, []byte(*secret), from, to, tag); err == nil {
			fmt.Printf("ok: %s sent message %s to %s and %s read it back\n", from, id, to, to)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("smoke: %w", err)
		}
		time.Sleep(time.Second)
	}
}

func smokeOnce(base string, secret []byte, from, to, ref string) (string, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	call := func(method, path, user, body string, out any) error {
		tok, err := auth.Sign(secret, user, 5*time.Minute)
		if err != nil {
			return err
		}
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
		}
		return json.Unmarshal(b, out)
	}
	var ack struct{ ID string }
	send := fmt.Sprintf(`{"op":"send","ref":%q,"to":%q,"body":{"text":"smoke test"}}`, ref, to)
	if err := call(http.MethodPost, "/v1/messages", from, send, &ack); err != nil {
		return "", err
	}
	var page struct {
		Msgs []struct{ ID, From string }
	}
	if err := call(http.MethodGet, "/v1/messages?after=0", to, "", &page); err != nil {
		return "", err
	}
	for _, m := range page.Msgs {
		if m.ID == ack.ID && m.From == from {
			return ack.ID, nil
		}
	}
	return "", fmt.Errorf("message %s was acknowledged but is not in %s's inbox", ack.ID, to)
}
