package node_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// onechatBinary builds cmd/onechat once per test run, with the race
// detector when the tests have it.
func onechatBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "onechat-test-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "onechat")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, "../cmd/onechat")...).CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// proc is a node in its own process, so that it can be killed -9.
type proc struct {
	t                    testing.TB
	name                 string
	args                 []string
	http, tcp, nats, log string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// startProcs starts size node processes routed into one cluster.
func startProcs(t testing.TB, size int) []*proc {
	t.Helper()
	bin := onechatBinary(t)
	ports := freePorts(t, 4*size)
	var routes []string
	for i := range size {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[4*i+3]))
	}
	procs := make([]*proc, size)
	for i := range size {
		p := &proc{t: t, name: fmt.Sprintf("p%d", i),
			http: fmt.Sprintf("127.0.0.1:%d", ports[4*i]),
			tcp:  fmt.Sprintf("127.0.0.1:%d", ports[4*i+1]),
			nats: fmt.Sprintf("127.0.0.1:%d", ports[4*i+2]),
		}
		dir := t.TempDir()
		p.log = filepath.Join(dir, "node.log")
		p.args = []string{bin, "--name", p.name, "--data", filepath.Join(dir, "data"),
			"--http", p.http, "--tcp", p.tcp, "--nats", p.nats,
			"--cluster", fmt.Sprintf("127.0.0.1:%d", ports[4*i+3]), "--routes", strings.Join(routes, ","),
			"--jwt-secret", testSecret, "--send-rate", "-1", "--log-level", "info"}
		procs[i] = p
	}
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { p.start() })
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, p := range procs {
			p.kill()
		}
		if t.Failed() {
			for _, p := range procs {
				p.dumpLog()
			}
		}
	})
	return procs
}

// start runs the process and waits until it reports ready.
func (p *proc) start() {
	p.t.Helper()
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		p.t.Error(err)
		return
	}
	cmd := exec.Command(p.args[0], p.args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		p.t.Errorf("%s: start: %v", p.name, err)
		return
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			p.t.Errorf("%s exited during start", p.name)
			return
		default:
		}
		resp, err := http.Get("http://" + p.http + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.t.Errorf("%s not ready after 90s", p.name)
}

func (p *proc) signal(sig syscall.Signal, wait time.Duration) error {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
		return nil
	case <-time.After(wait):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("%s: still running %s after %v", p.name, wait, sig)
	}
}

// freeze stops the process without closing its sockets, as a hung host
// or a network partition would: peers notice only by missed pings.
func (p *proc) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		p.t.Errorf("%s: SIGSTOP: %v", p.name, err)
	}
}

// kill ends the process at once, as a crash would.
func (p *proc) kill() { _ = p.signal(syscall.SIGKILL, 10*time.Second) }

// term asks the process to drain and stop, and fails the test if it
// does not within the documented time.
func (p *proc) term() {
	p.t.Helper()
	if err := p.signal(syscall.SIGTERM, 40*time.Second); err != nil {
		p.t.Error(err)
	}
	p.mu.Lock()
	code := p.cmd.ProcessState.ExitCode()
	p.mu.Unlock()
	if code != 0 {
		p.t.Errorf("%s exited with %d after SIGTERM", p.name, code)
	}
}

func (p *proc) dumpLog() {
	f, err := os.Open(p.log)
	if err != nil {
		return
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	p.t.Logf("--- last lines of %s's log:\n%s", p.name, strings.Join(lines, "\n"))
}

// roamer is a client that, when its node goes away, reconnects to another
// node from the list in its last ok frame, resuming from its cursor.
type roamer struct {
	t         testing.TB
	user      string
	transport string // "ws" or "tcp"
	resume    bool   // auth with after=cursor, as a recipient does

	c      *client
	seeds  []nodeAddr // the addresses it was configured with
	nodes  []nodeAddr // from the last ok frame
	cursor uint64
}

type nodeAddr struct{ Name, WS, TCP string }

// connect tries the node list from the last ok frame, then the seeds it
// was configured with, until one accepts. A client is expected to do the
// same: the list holds the nodes up when it connected.
func (r *roamer) connect() error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for _, a := range append(r.nodes[:len(r.nodes):len(r.nodes)], r.seeds...) {
			if err := r.dial(a); err == nil {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s: no node accepted within 60s", r.user)
}

func (r *roamer) dial(a nodeAddr) error {
	var c *client
	var err error
	if r.transport == "ws" {
		c, err = tryDialWS(r.t, "ws://"+a.WS+"/ws", r.user, nil)
	} else {
		c, err = tryDialTCP(r.t, a.TCP, r.user)
	}
	if err != nil {
		return err
	}
	auth := map[string]any{"op": "auth", "token": token(r.t, r.user)}
	if r.resume {
		auth["after"] = r.cursor
	}
	if err := c.write(mustJSON(auth)); err != nil {
		c.close()
		return err
	}
	select {
	case f := <-c.frames:
		if f.Op != "ok" {
			c.close()
			return fmt.Errorf("%s: auth answered %+v", r.user, f)
		}
		r.nodes = r.nodes[:0]
		for _, n := range f.Nodes {
			r.nodes = append(r.nodes, nodeAddr{Name: n.Name,
				WS: strings.TrimSuffix(strings.TrimPrefix(n.WS, "ws://"), "/ws"), TCP: n.TCP})
		}
	case err := <-c.done:
		return fmt.Errorf("%s: connection ended during auth: %v", r.user, err)
	case <-time.After(10 * time.Second):
		c.close()
		return errors.New("no ok within 10s")
	}
	r.c = c
	r.t.Logf("%s connected to %s at %s after %d", r.user, a.Name, time.Now().Format("15:04:05.000"), r.cursor)
	return nil
}

func (p *proc) addr() nodeAddr { return nodeAddr{Name: p.name, WS: p.http, TCP: p.tcp} }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// onechat smoke sends a message through a running node and reads it
// back; with the wrong secret it fails and says why.
func TestSmokeCommand(t *testing.T) {
	tn := startNode(t)
	bin := onechatBinary(t)
	run := func(secret string) (string, error) {
		cmd := exec.Command(bin, "smoke", "--url", "http://"+tn.HTTPAddr(), "--timeout", "2s")
		cmd.Env = append(os.Environ(), "ONECHAT_JWT_SECRET="+secret)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(testSecret); err != nil || !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("smoke: %v: %s", err, out)
	}
	if out, err := run("another-secret-of-enough-length-0123456789"); err == nil ||
		!strings.Contains(out, "auth_failed") {
		t.Fatalf("smoke with a wrong secret: %v: %s", err, out)
	}
}
