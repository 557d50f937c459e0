// Package storage holds onechat's two stores: the JetStream inbox stream,
// where every message lives, and a small bbolt file of node-local metadata.
//
// Each user has an inbox subject in one stream. A direct message is stored
// twice: once in the recipient's inbox and once in the sender's, so every
// device of either user can catch up by reading one subject from its last
// sequence. Reads are direct gets by subject and sequence: no JetStream
// consumer exists per user or per request.
package storage
