package node_test

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onechat/onechat/node"
)

// scrape reads /metrics into name{labels} → value.
func scrape(t testing.TB, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// The metrics follow what clients do: connections by transport, sessions,
// messages in and out, store and delivery latency, syncs and errors.
func TestMetrics(t *testing.T) {
	tn := startNode(t)
	url := "http://" + tn.HTTPAddr() + "/metrics"
	alice := tn.ws(t, "alice")
	alice.auth("alice")
	bob := tn.tcp(t, "bob")
	bob.auth("bob")
	bob2 := tn.tcp(t, "bob2")
	bob2.auth("bob")
	alice.sendTo("bob", "m1", text("hi"))
	bob.expect("msg")
	bob2.expect("msg")
	alice.sendTo("bob", "m1", text("hi")) // a retry
	alice.sendRaw([]byte("{not json"))
	alice.expectError("bad_json")
	alice.send(map[string]any{"op": "sync", "after": 0})
	alice.expect("synced")

	m := scrape(t, url)
	for name, want := range map[string]float64{
		`onechat_connections{transport="ws"}`:   1,
		`onechat_connections{transport="tcp"}`:  2,
		`onechat_sessions`:                      3,
		`onechat_online_users`:                  2,
		`onechat_messages_in_total`:             2,
		`onechat_messages_duplicate_total`:      1,
		`onechat_messages_out_total`:            3, // bob twice, alice's own copy once
		`onechat_store_seconds_count`:           3, // two copies, then the retry's probe
		`onechat_delivery_seconds_count`:        2,
		`onechat_sync_requests_total`:           1,
		`onechat_errors_total{code="bad_json"}`: 1,
		`onechat_ready`:                         1,
		`onechat_jetstream_current`:             1,
		`onechat_inbox_stream_leader`:           1,
		`onechat_cluster_nodes`:                 1,
	} {
		if got, ok := m[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	bob2.close()
	bob2.ended()
	waitFor(t, 5*time.Second, func() (float64, bool) {
		m := scrape(t, url)
		return m[`onechat_connections{transport="tcp"}`], m[`onechat_connections{transport="tcp"}`] == 1 &&
			m[`onechat_sessions`] == 2
	})

	// On a listener of their own, and off.
	own := startNode(t, func(c *node.Config) { c.Metrics = "127.0.0.1:0" })
	if status, _ := own.httpDo(t, "GET", "/metrics", "", ""); status != 404 {
		t.Fatalf("/metrics on the API port with a metrics listener: %d", status)
	}
	off := startNode(t, func(c *node.Config) { c.Metrics = "off" })
	if status, _ := off.httpDo(t, "GET", "/metrics", "", ""); status != 404 {
		t.Fatalf("/metrics with metrics off: %d", status)
	}
}
