// Package bus owns onechat's NATS subject namespace and the node's live
// subscriptions. Every subject onechat uses is built here, from IDs that
// have been encoded so that no user input becomes subject syntax.
//
// Subjects (docs/subjects.md is the reference for other services):
//
//	oc.in.<user>    a user's inbox; stored by the OC_INBOX stream
//	oc.live.<user>  the stream republishes each stored message here; a node
//	                subscribes once per online user
//	oc.api.send     services send messages here (request/reply)
//	oc.api.presence services ask whether a user is online (request/reply)
package bus
