package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// fakeProgram puts an executable shell script called name on a PATH of its
// own, ahead of the real one; --check-proxy finds it there first.
func fakeProgram(t *testing.T, dir, name, script string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestCheckProxyFlags runs --check-proxy against fake nginx and apache2ctl
// that print what the real ones print for Debian's stock configuration and
// for the ones Stardust ships; integration/checkproxy_test.go runs the real
// programs.
func TestCheckProxyFlags(t *testing.T) {
	bin := t.TempDir()
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	confDir := t.TempDir()
	stock := filepath.Join(confDir, "stock.conf")
	if err := os.WriteFile(stock, []byte("# configuration file /etc/nginx/nginx.conf:\nworker_processes 2;\npid "+confDir+"/none.pid;\nevents {\n\tworker_connections 768;\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	shipped, err := filepath.Abs(filepath.Join("..", "..", "conf", "nginx", "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	// nginx -T [-c FILE]: the file given, else the stock one.
	fakeProgram(t, bin, "nginx", `[ "$1" = -T ] || exit 9
if [ "$2" = -c ]; then echo "# configuration file $3:"; cat "$3"; else cat `+stock+`; fi
`)
	mpm := filepath.Join(confDir, "mpm_event.conf")
	if err := os.WriteFile(mpm, []byte("ThreadsPerChild 25\nMaxRequestWorkers 150\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// apache2ctl -t -D DUMP_INCLUDES -D DUMP_MODULES, reading $APACHE_CONFDIR.
	fakeProgram(t, bin, "apache2ctl", `[ "$*" = "-t -D DUMP_INCLUDES -D DUMP_MODULES" ] || exit 9
echo "Included configuration files:"
echo "  (*) ${APACHE_CONFDIR:-`+confDir+`}/mpm_event.conf"
echo "Loaded Modules:"
echo " mpm_event_module (shared)"
`)
	shippedApache, err := filepath.Abs(filepath.Join("..", "..", "conf", "apache2"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"nginx stock", []string{"--check-proxy", "nginx"}, checkProxyTooSmall, "TOO SMALL for 1,000 held clients"},
		{"nginx stock, few clients", []string{"--check-proxy", "nginx", "--check-proxy-clients", "300"}, checkProxyOK, "capacity: 384 held clients"},
		{"nginx shipped", []string{"--check-proxy", "nginx=" + shipped, "--check-proxy-clients", "5000"}, checkProxyOK, "OK: enough for 5,000"},
		{"apache2 stock", []string{"--check-proxy", "apache2"}, checkProxyTooSmall, "capacity: 125 held clients"},
		{"apache2 shipped", []string{"--check-proxy", "apache2=" + shippedApache}, checkProxyOK, "MaxRequestWorkers: 2048 threads"},
		{"unknown server", []string{"--check-proxy", "lighttpd"}, checkProxyFailed, `want nginx, apache2 or auto`},
		{"no clients", []string{"--check-proxy", "nginx", "--check-proxy-clients", "0"}, checkProxyFailed, "want 1 or more"},
		{"nginx fails", []string{"--check-proxy", "nginx=/nonexistent.conf"}, checkProxyFailed, "nginx -T -c /nonexistent.conf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, out := newTestMain()
			if err := m.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			if code := m.CheckProxy.run(m.Stdout, m.Stderr); code != tc.code || !strings.Contains(out.String(), tc.want) {
				t.Errorf("exit %d, want %d, and output with %q:\n%s", code, tc.code, tc.want, out)
			}
		})
	}
}

// TestProcessFacts reads what checkNginx learns from /proc about this
// process and a child of it.
func TestProcessFacts(t *testing.T) {
	n, err := openFileLimit(os.Getpid())
	if err != nil || n < 1 {
		t.Fatalf("openFileLimit of this process: %d %v", n, err)
	}
	pidFile := filepath.Join(t.TempDir(), "x.pid")
	if err := os.WriteFile(pidFile, []byte(" "+strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if pidAlive(pidFile) != os.Getpid() || pidAlive(pidFile+".none") != 0 {
		t.Errorf("pidAlive does not find this process, or finds one without a pid file")
	}
	sleep := exec.Command("sleep", "30")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sleep.Process.Kill(); _ = sleep.Wait() }()
	if kids := childPIDs(os.Getpid()); !slices.Contains(kids, sleep.Process.Pid) {
		t.Errorf("childPIDs of this process %v lack the sleep %d it started", kids, sleep.Process.Pid)
	}
	var buf bytes.Buffer
	if code := (&checkProxyOptions{Spec: "auto", Clients: 1}).run(&buf, &buf); code == checkProxyFailed && !strings.Contains(buf.String(), "neither nginx nor apache2") {
		t.Errorf("auto: %s", buf.String())
	}
}
