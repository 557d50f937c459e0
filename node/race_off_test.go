//go:build !race

package node_test

// raceEnabled says the tests run under the race detector; processes the
// tests start are built the same way.
const raceEnabled = false
