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

func TestClaimName(t *testing.T) {
	m, err := OpenMeta(filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, step := range []struct{ name, prev string }{{"n1", ""}, {"n1", "n1"}, {"n2", "n1"}, {"n2", "n2"}} {
		prev, err := m.ClaimName(step.name)
		if err != nil || prev != step.prev {
			t.Fatalf("ClaimName(%s) = %q, %v; want %q", step.name, prev, err, step.prev)
		}
	}
}
