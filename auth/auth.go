// Package auth issues and verifies the HS256 JSON Web Tokens that clients
// present. A token's subject is the user ID; an expiry is required.
package auth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/onechat/onechat/protocol"
)

// SecretFile is the name of the generated secret inside a data directory.
const SecretFile = "jwt-secret"

// minSecretLen is the shortest secret accepted: HS256 wants 256 bits.
const minSecretLen = 32

// Errors returned by Verify. Both are refusals; they differ in what the
// client should do next (get a new token, or stop trying).
var (
	ErrExpired = errors.New("auth: token has expired")
	ErrInvalid = errors.New("auth: token is invalid")
)

// Claims is what a verified token says.
type Claims struct {
	User   string
	Expiry time.Time
}

// Verifier checks tokens signed with one secret.
type Verifier struct {
	secret []byte
	parser *jwt.Parser
	now    func() time.Time
}

// NewVerifier returns a Verifier for secret.
func NewVerifier(secret []byte) *Verifier {
	v := &Verifier{secret: secret, now: time.Now}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return v.now() }),
	)
	return v
}

// Verify checks token's signature and expiry and returns its claims. The
// error wraps ErrExpired or ErrInvalid and says why in words.
func (v *Verifier) Verify(token string) (Claims, error) {
	var rc jwt.RegisteredClaims
	_, err := v.parser.ParseWithClaims(token, &rc, func(*jwt.Token) (any, error) {
		return v.secret, nil
	})
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return Claims{}, fmt.Errorf("%w at %s", ErrExpired, rc.ExpiresAt.UTC().Format(time.RFC3339))
	case err != nil:
		return Claims{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := protocol.CheckUserID(rc.Subject); err != nil {
		return Claims{}, fmt.Errorf("%w: subject: %v", ErrInvalid, err)
	}
	return Claims{User: rc.Subject, Expiry: rc.ExpiresAt.Time}, nil
}

// Sign returns a token for user that expires after ttl.
func Sign(secret []byte, user string, ttl time.Duration) (string, error) {
	if err := protocol.CheckUserID(user); err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	if ttl < time.Second {
		return "", errors.New("auth: ttl must be at least 1s (token times count whole seconds)")
	}
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject:   user,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	})
	s, err := tok.SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("auth: sign: %w", err)
	}
	return s, nil
}

// HasSecretFile reports whether dataDir holds a generated secret.
func HasSecretFile(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, SecretFile))
	return err == nil
}

// LoadSecret returns the secret a node uses: explicit when not empty,
// otherwise the one kept in dataDir, generated (mode 0600) on first use.
// A node and the token command call it with the same arguments and so
// agree on the secret.
func LoadSecret(explicit, dataDir string) ([]byte, error) {
	if explicit != "" {
		if len(explicit) < minSecretLen {
			return nil, fmt.Errorf("auth: jwt secret is %d bytes; use at least %d", len(explicit), minSecretLen)
		}
		return []byte(explicit), nil
	}
	path := filepath.Join(dataDir, SecretFile)
	b, err := os.ReadFile(path)
	if err == nil {
		s := strings.TrimSpace(string(b))
		if len(s) < minSecretLen {
			return nil, fmt.Errorf("auth: secret in %s is shorter than %d bytes", path, minSecretLen)
		}
		return []byte(s), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("auth: read secret: %w", err)
	}
	return createSecret(dataDir, path)
}

// createSecret writes a new random secret without racing another process
// doing the same: the file appears complete (link of a temp file) or not at
// all, and whoever loses the race reads the winner's secret.
func createSecret(dataDir, path string) ([]byte, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("auth: create data directory: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("auth: random: %w", err)
	}
	secret := hex.EncodeToString(raw)
	tmp, err := os.CreateTemp(dataDir, ".jwt-secret-*")
	if err != nil {
		return nil, fmt.Errorf("auth: write secret: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("auth: write secret: %w", err)
	}
	if _, err := tmp.WriteString(secret + "\n"); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("auth: write secret: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("auth: write secret: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("auth: write secret: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return LoadSecret("", dataDir)
		}
		return nil, fmt.Errorf("auth: write secret: %w", err)
	}
	return []byte(secret), nil
}

// BearerToken returns the token of an Authorization header value using
// the Bearer scheme, whose name is case-insensitive (RFC 9110).
func BearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	return token, true
}
