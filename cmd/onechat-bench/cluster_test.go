package main

import (
	"bytes"
	"testing"
)

// TestHomeNodeCrosses checks that with place cross every recipient is on
// another node than its sender, and that the nodes get even shares.
func TestHomeNodeCrosses(t *testing.T) {
	for _, n := range []int{2, 6, 7, 600, 6001} {
		for _, k := range []int{3, 4, 5} {
			count := make([]int, k)
			half := n / 2
			for i := range n {
				count[homeNode("cross", i, n, k)]++
			}
			for i := range half {
				s, r := homeNode("cross", i, n, k), homeNode("cross", i+half, n, k)
				if s == r {
					t.Fatalf("n %d, k %d: pair %d has both ends on node %d", n, k, i, s)
				}
			}
			for j := range k {
				if count[j] < n/k-2 || count[j] > n/k+2 {
					t.Errorf("n %d, k %d: node %d has %d connections, want about %d", n, k, j, count[j], n/k)
				}
			}
		}
	}
}

func TestHomeNodeN0(t *testing.T) {
	for i := range 10 {
		if h := homeNode("n0", i, 10, 3); h != 0 {
			t.Fatalf("place n0: connection %d on node %d", i, h)
		}
	}
}

func TestPrefixWriter(t *testing.T) {
	var out bytes.Buffer
	w := &prefixWriter{w: &out, prefix: []byte("[n1] ")}
	for _, chunk := range []string{"a", "b\nc", "\n", "d\ne\n", "f"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if want := "[n1] ab\n[n1] c\n[n1] d\n[n1] e\n"; out.String() != want {
		t.Fatalf("got %q, want %q", out.String(), want)
	}
}
