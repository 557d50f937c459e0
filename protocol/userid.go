package protocol

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// MaxUserIDLen is the longest user ID, in bytes.
const MaxUserIDLen = 128

// CheckUserID reports why id is not a valid user ID, or nil. A user ID is
// 1 to MaxUserIDLen bytes of UTF-8 with no whitespace and no control or
// format characters. Characters that are NATS subject syntax ('.', '*', '>')
// are allowed: package bus encodes such IDs before they reach a subject.
func CheckUserID(id string) error {
	if id == "" {
		return errors.New("user ID is empty")
	}
	if len(id) > MaxUserIDLen {
		return fmt.Errorf("user ID is %d bytes; the limit is %d", len(id), MaxUserIDLen)
	}
	if !utf8.ValidString(id) {
		return errors.New("user ID is not valid UTF-8")
	}
	for _, r := range id {
		switch {
		case unicode.IsSpace(r):
			return errors.New("user ID contains whitespace")
		case unicode.IsControl(r), unicode.Is(unicode.Cf, r):
			return errors.New("user ID contains a control or format character")
		}
	}
	return nil
}
