package main

import (
	"net"
	"strings"
	"testing"
)

// TestCheckSaysWhatTheStartWouldRefuse: --check rejects what the start
// would reject, lists every problem at once, and each error says what it
// means (issue 22, "The first run"). Before: --listen 127.0.0.1:99999,
// -p 99999 and --listen unix: were "ok"; --timeout 5x gave two errors;
// --check with flags said "(defaults)"; a TOML type error named Go's types.
func TestCheckSaysWhatTheStartWouldRefuse(t *testing.T) {
	for _, c := range []struct {
		name, file string
		args       []string
		want, not  []string
	}{
		{name: "port out of range", args: []string{"--listen", "127.0.0.1:99999"},
			want: []string{"configuration (defaults) with --listen 127.0.0.1:99999:", `server.listen: listen "127.0.0.1:99999": port 99999 is outside 0-65535`}},
		{name: "short port flag", args: []string{"-p", "99999"},
			want: []string{"with -p 99999:", "port 99999 is outside 0-65535"}},
		{name: "empty socket path", args: []string{"--listen", "unix:"},
			want: []string{`server.listen: listen "unix:": empty socket path`}},
		{name: "bad timeout once", args: []string{"--timeout", "5x"},
			want: []string{`--timeout: want a duration like 30s, got "5x"`}, not: []string{"poll_timeout"}},
		{name: "every problem", args: []string{"--timeout", "5x", "-p", "99999", "--log-level", "loud"},
			want: []string{"--timeout:", "port 99999", "log.level"}},
		{name: "file and flags", file: "[comet]\nhistory_size = 3\n", args: []string{"--fcgi", "-p", "99999"},
			want: []string{".toml with --fcgi -p 99999:"}, not: []string{"(defaults)"}},
		{name: "type error", file: "[comet]\nhistory_size = \"x\"\n",
			want: []string{"comet.history_size (line 2): want an integer, got a string"}, not: []string{"destination", "int64"}},
		{name: "type error, boolean", file: "[server]\ndemo = \"yes\"\n",
			want: []string{"server.demo (line 2): want true or false, got a string"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"--check"}, c.args...)
			if c.file != "" {
				args = append(args, "-c", writeFile(t, c.file))
			}
			m, _ := newTestMain()
			err := m.ParseFlags(args)
			if err == nil {
				t.Fatalf("stardust %s: accepted", strings.Join(args, " "))
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			for _, n := range append(c.not, "fcgi: listen") {
				if strings.Contains(err.Error(), n) {
					t.Errorf("error says %q:\n%v", n, err)
				}
			}
			if w := strings.Count(err.Error(), "--timeout"); w > 1+strings.Count(strings.Join(c.args, " "), "--timeout") {
				t.Errorf("--timeout reported %d times:\n%v", w, err)
			}
		})
	}
}

// TestHTTPListenErrorSaysListen: a port already taken, in plain HTTP mode,
// is reported as server.listen, not as FastCGI's ("listen: fcgi: listen").
func TestHTTPListenErrorSaysListen(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	m, _ := newTestMain()
	if err := m.ParseFlags([]string{"--listen", taken.Addr().String(), "--log-level", "warn"}); err != nil {
		t.Fatal(err)
	}
	err = m.Run()
	if err == nil {
		_ = m.Close()
		t.Fatal("started on a taken port")
	}
	if msg := err.Error(); strings.Contains(msg, "fcgi") || !strings.HasPrefix(msg, "server.listen: listen tcp "+taken.Addr().String()) {
		t.Errorf("error %q, want server.listen: listen tcp %s: ... and no fcgi", msg, taken.Addr())
	}
}
