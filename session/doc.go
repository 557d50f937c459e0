// Package session is onechat's transport-independent core. A Hub holds the
// node's sessions and online users, stores sent messages and delivers live
// ones; a Session is one client connection speaking the JSON protocol.
// Transports (WebSocket, TCP) feed a Session frames and write what it
// queues; they know nothing of the protocol beyond framing.
//
// Lock order, where more than one is held: Session.hmu, then
// userState.mu, then a userShard's mu, then Session.mu, then outbox.mu.
package session
