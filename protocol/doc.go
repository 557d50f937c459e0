// Package protocol defines the onechat client protocol: one JSON object per
// frame, the same on WebSocket, TCP and HTTP. It decodes and validates
// incoming frames, encodes outgoing ones and holds the catalogue of error
// codes that reach clients. It knows nothing about transports or storage.
//
// docs/protocol.md is the reference for client authors; this package is its
// implementation.
package protocol
