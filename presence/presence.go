// Package presence answers whether users are online. A user is online
// while some node holds a session for them; nothing is written when users
// connect or disconnect; the answer comes from the sessions themselves.
//
// This version sees the sessions of its own node only. A cluster-wide
// answer needs the other nodes' session tables (a request to each node, or
// the user's subscription interest) and is not built yet.
package presence

// Sessions is the node's table of connected users.
type Sessions interface {
	// Online returns the transports of user's sessions on this node.
	Online(user string) []string
}

// Status is a user's presence.
type Status struct {
	User       string   `json:"user"`
	Online     bool     `json:"online"`
	Transports []string `json:"transports,omitempty"` // one entry per connection
}

// Directory answers presence queries.
type Directory struct {
	local Sessions
}

// NewDirectory returns a Directory over the node's sessions.
func NewDirectory(local Sessions) *Directory { return &Directory{local: local} }

// Lookup returns user's presence.
func (d *Directory) Lookup(user string) Status {
	t := d.local.Online(user)
	return Status{User: user, Online: len(t) > 0, Transports: t}
}
