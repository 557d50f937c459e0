// Package node runs one onechat node: an embedded NATS server with
// JetStream, the node-local metadata store, the chat hub and the client
// listeners (HTTP with WebSocket at /ws, and TCP). It wires the other
// packages together and owns start-up and graceful shutdown.
package node
