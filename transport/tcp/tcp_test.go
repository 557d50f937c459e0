package tcp

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
)

type recorder struct {
	frames   []string
	tooLarge []int
}

func (r *recorder) Handle(b []byte) { r.frames = append(r.frames, string(b)) }
func (r *recorder) TooLarge(n int)  { r.tooLarge = append(r.tooLarge, n) }

func read(t *testing.T, in string, maxFrame int) *recorder {
	t.Helper()
	r := &recorder{}
	err := readLines(bufio.NewReaderSize(strings.NewReader(in), 16), maxFrame, r)
	if err != io.EOF {
		t.Fatalf("readLines: %v", err)
	}
	return r
}

func TestReadLines(t *testing.T) {
	long := strings.Repeat("a", 50)
	r := read(t, "one\ntwo\r\n\n  \r\n"+long+"\n"+strings.Repeat("b", 200)+"\nthree\npartial", 64)
	want := []string{"one", "two", long, "three"}
	if strings.Join(r.frames, "|") != strings.Join(want, "|") {
		t.Fatalf("frames %q, want %q", r.frames, want)
	}
	if len(r.tooLarge) != 1 || r.tooLarge[0] < 200 {
		t.Fatalf("tooLarge %v", r.tooLarge)
	}
}

// FuzzReadLines checks that every delivered frame is a line of the input
// within the limit, and that the reader never stops early.
func FuzzReadLines(f *testing.F) {
	f.Add([]byte("a\nbb\r\n\n"), 4)
	f.Add(bytes.Repeat([]byte("x"), 100), 8)
	f.Fuzz(func(t *testing.T, in []byte, maxFrame int) {
		if maxFrame < 1 || maxFrame > 1<<16 {
			return
		}
		r := &recorder{}
		if err := readLines(bufio.NewReaderSize(bytes.NewReader(in), 16), maxFrame, r); err != io.EOF {
			t.Fatalf("error %v", err)
		}
		lines := map[string]bool{}
		for _, l := range bytes.Split(in, []byte("\n")) {
			lines[string(bytes.TrimRight(l, "\r"))] = true
		}
		for _, fr := range r.frames {
			if len(fr) > maxFrame+2 || !lines[fr] || strings.ContainsRune(fr, '\n') {
				t.Fatalf("frame %q not a line of the input within %d", fr, maxFrame)
			}
		}
	})
}
