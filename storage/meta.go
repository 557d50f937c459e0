package storage

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var bucketNode = []byte("node")

// Meta is the node-local bbolt store. It holds what belongs to this node
// and this data directory only; anything the cluster shares lives in
// JetStream.
type Meta struct {
	db *bolt.DB
}

// ErrLocked reports that another process holds the metadata file.
var ErrLocked = errors.New("storage: metadata file is in use by another process")

// OpenMeta opens (creating if needed) the bbolt file at path.
func OpenMeta(path string) (*Meta, error) {
	// bbolt waits forever for the file lock unless told otherwise; a second
	// node on the same directory must fail fast instead.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, path)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketNode)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("storage: init %s: %w", path, err)
	}
	return &Meta{db: db}, nil
}

// Close closes the file.
func (m *Meta) Close() error { return m.db.Close() }

// NodeID returns this data directory's node ID, created on first call and
// stable for the life of the directory.
func (m *Meta) NodeID() (string, error) {
	var id string
	err := m.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNode)
		if v := b.Get([]byte("id")); v != nil {
			id = string(v)
			return nil
		}
		raw := make([]byte, 6)
		if _, err := rand.Read(raw); err != nil {
			return err
		}
		id = hex.EncodeToString(raw)
		if err := b.Put([]byte("created"), []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
			return err
		}
		return b.Put([]byte("id"), []byte(id))
	})
	if err != nil {
		return "", fmt.Errorf("storage: node id: %w", err)
	}
	return id, nil
}

// ClaimName records name as the name this data directory's node runs
// under in its cluster, and returns the name recorded before ("" the
// first time). JetStream knows a node's replicas by its name, so a node
// restarted under another name would look like a new peer while the old
// one stays in the cluster's membership as a dead one.
func (m *Meta) ClaimName(name string) (previous string, err error) {
	err = m.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNode)
		if v := b.Get([]byte("name")); v != nil {
			previous = string(v)
		}
		if previous == name {
			return nil
		}
		return b.Put([]byte("name"), []byte(name))
	})
	if err != nil {
		return "", fmt.Errorf("storage: node name: %w", err)
	}
	return previous, nil
}
