package storage

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestMetaNodeIDStableAndLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	m, err := OpenMeta(path)
	if err != nil {
		t.Fatal(err)
	}
	id, err := m.NodeID()
	if err != nil || len(id) != 12 {
		t.Fatalf("node id %q %v", id, err)
	}
	if _, err := OpenMeta(path); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	m.Close()
	m, err = OpenMeta(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if again, _ := m.NodeID(); again != id {
		t.Fatalf("node id changed: %s -> %s", id, again)
	}
}
