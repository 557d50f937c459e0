package node_test

import (
	"strconv"
	"testing"

	"github.com/onechat/onechat/node"
)

// BenchmarkSendDeliver is one direct message end to end on one node:
// sent over TCP, stored twice, acknowledged, delivered over WebSocket.
// One message is in flight at a time, so ns/op is the latency of the
// whole path; cmd/onechat-bench measures throughput under load.
func BenchmarkSendDeliver(b *testing.B) {
	tn := startNode(b, func(c *node.Config) { c.Session.SendRate = -1 })
	alice := tn.tcp(b, "alice")
	alice.auth("alice")
	bob := tn.ws(b, "bob")
	bob.auth("bob")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		alice.send(map[string]any{"op": "send", "ref": strconv.Itoa(i), "to": "bob", "body": i})
		alice.expect("ack")
		bob.expect("msg")
	}
}
