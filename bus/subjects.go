package bus

import (
	"encoding/base64"
	"errors"
	"strings"
)

// Subject prefixes and service subjects. See the package comment.
const (
	InboxPrefix     = "oc.in."
	LivePrefix      = "oc.live."
	SendSubject     = "oc.api.send"
	PresenceSubject = "oc.api.presence"

	// NodeBeatSubject carries every node's heartbeat: its name and
	// client addresses, every few seconds.
	NodeBeatSubject = "oc.node.beat"
	// UserPresencePrefix + token carries a user's presence events.
	UserPresencePrefix = "oc.presence.user."
	// NodePresencePrefix + node token carries a node's up and down events.
	NodePresencePrefix = "oc.presence.node."

	// InboxWildcard matches every inbox; the stream's subject filter.
	InboxWildcard = InboxPrefix + "*"
	// LiveTemplate is the stream's RePublish destination for an inbox.
	LiveTemplate = LivePrefix + "{{wildcard(1)}}"
)

// Headers onechat sets on stored messages, besides the ones JetStream adds
// (Nats-Sequence, Nats-Last-Sequence, ...).
const (
	// HeaderOrigin names the session that sent a sender's copy, so that
	// session is not sent its own message back.
	HeaderOrigin = "Oc-Origin"
	// HeaderCheck marks a node-internal nudge on a live shard: look in
	// the store for messages the live path may have lost. It never
	// travels over NATS.
	HeaderCheck = "Oc-Check"
	// HeaderProbe marks a presence probe published to a live subject;
	// every node holding the user answers it. Listeners of oc.live.*
	// see probes too and should skip them.
	HeaderProbe = "Oc-Probe"
)

// BarrierSubject is where a node answers barrier requests from its peers.
// A request travels the same route connection as the sender's earlier
// subscriptions, so its answer proves those reached the node.
func BarrierSubject(node string) string { return "oc.node." + Token(node) + ".barrier" }

// encodedMark starts every encoded token. It is not a plain character, so
// an encoded token never equals a plain one.
const encodedMark = '~'

// Token returns the subject token for a user ID. IDs made only of ASCII
// letters, digits, '-' and '_' are used as they are; any other ID becomes
// '~' followed by its unpadded base64url encoding. The mapping is one to
// one and its output is never NATS subject syntax.
func Token(id string) string {
	if plain(id) {
		return id
	}
	return string(encodedMark) + base64.RawURLEncoding.EncodeToString([]byte(id))
}

// ErrBadToken reports a subject token that Token could not have produced.
var ErrBadToken = errors.New("bus: not a user token")

// UserID reverses Token.
func UserID(token string) (string, error) {
	if plain(token) {
		return token, nil
	}
	rest, ok := strings.CutPrefix(token, string(encodedMark))
	if !ok {
		return "", ErrBadToken
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || plain(string(b)) {
		return "", ErrBadToken
	}
	return string(b), nil
}

func plain(id string) bool {
	if id == "" {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// InboxSubject is the stored subject of user's inbox.
func InboxSubject(user string) string { return InboxPrefix + Token(user) }

// LiveSubject is the subject on which user's stored messages are
// republished for live delivery.
func LiveSubject(user string) string { return LivePrefix + Token(user) }
