package main

// stardust --check-proxy: how many held clients the nginx or apache2 in
// front of Stardust carries, from its effective configuration, and what to
// change. The reading and the arithmetic are in internal/proxycheck; this
// file runs the web server's own programs and finds what they do not say.

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/stardust-go/stardust/internal/proxycheck"
)

// checkProxyOptions are the flags of --check-proxy.
type checkProxyOptions struct {
	Spec    string // SERVER[=CONFIG]: nginx, apache2 or auto
	Clients int    // held clients the web server must carry
}

// defaultCheckClients is the target of --check-proxy: a busy evening.
const defaultCheckClients = 1000

func (o *checkProxyOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.Spec, "check-proxy", "", "say how many held clients the web server in front carries and what to change, then exit: `SERVER` is nginx, apache2 or auto, optionally =CONFIG (nginx.conf, or the apache2 directory)")
	fs.IntVar(&o.Clients, "check-proxy-clients", defaultCheckClients, "held clients --check-proxy expects the web server to carry")
}

// Exit codes of --check-proxy.
const (
	checkProxyOK       = 0
	checkProxyTooSmall = 1
	checkProxyFailed   = 2
)

// run performs the check and returns the exit code: 0 when the web server
// carries o.Clients, 1 when it does not, 2 when it could not be read.
func (o *checkProxyOptions) run(stdout, stderr io.Writer) int {
	server, conf, _ := strings.Cut(o.Spec, "=")
	if o.Clients < 1 {
		fmt.Fprintf(stderr, "stardust: --check-proxy-clients %d: want 1 or more\n", o.Clients)
		return checkProxyFailed
	}
	if server == "auto" {
		server = detectProxy()
		if server == "" {
			fmt.Fprintln(stderr, "stardust: --check-proxy auto: neither nginx nor apache2 is installed; name one")
			return checkProxyFailed
		}
	}
	var r *proxycheck.Report
	var err error
	switch server {
	case "nginx":
		r, err = checkNginx(conf, o.Clients)
	case "apache2":
		r, err = checkApache(conf, o.Clients)
	default:
		fmt.Fprintf(stderr, "stardust: --check-proxy %q: want nginx, apache2 or auto, optionally =CONFIG\n", o.Spec)
		return checkProxyFailed
	}
	if err != nil {
		fmt.Fprintf(stderr, "stardust: --check-proxy %s: %v\n", server, err)
		return checkProxyFailed
	}
	r.Write(stdout)
	if !r.OK() {
		return checkProxyTooSmall
	}
	return checkProxyOK
}

// detectProxy names the web server that runs, else the one installed.
func detectProxy() string {
	for _, s := range []struct{ name, pidFile string }{
		{"nginx", proxycheck.NginxDefaultPidFile}, {"apache2", "/run/apache2/apache2.pid"},
	} {
		if pidAlive(s.pidFile) > 0 {
			return s.name
		}
	}
	for _, name := range []string{"nginx", "apache2"} {
		if _, err := proxycheck.LookProgram(name); err == nil {
			return name
		}
	}
	return ""
}

// runProgram runs a web server's program, bounded in time, and returns its
// standard output; a failure carries what it printed.
func runProgram(env []string, name string, args ...string) (string, error) {
	path, err := proxycheck.LookProgram(name)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}

// checkNginx reads nginx -T (of conf when given, else of the installed
// configuration) and, when worker_rlimit_nofile is unset, the open-file
// limit of the running workers.
func checkNginx(conf string, target int) (*proxycheck.Report, error) {
	args := []string{"-T"}
	if conf != "" {
		args = append(args, "-c", conf)
	}
	dump, err := runProgram(nil, "nginx", args...)
	if err != nil {
		return nil, err
	}
	c, err := proxycheck.ParseNginx(dump)
	if err != nil {
		return nil, err
	}
	rt := proxycheck.NginxRuntime{CPUs: runtime.NumCPU(), OpenFiles: 1024,
		OpenFilesFrom: "nginx is not running: systemd's default soft limit for services; started by hand, the shell's `ulimit -n`"}
	pidFile := c.PidFile
	if pidFile == "" {
		pidFile = proxycheck.NginxDefaultPidFile
	}
	if pid := pidAlive(pidFile); pid > 0 {
		workers := childPIDs(pid)
		rt.Workers = len(workers)
		if len(workers) > 0 {
			if n, err := openFileLimit(workers[0]); err == nil {
				rt.OpenFiles, rt.OpenFilesFrom = n, fmt.Sprintf("the running workers' limit, /proc/%d/limits", workers[0])
			}
		}
	}
	return proxycheck.NginxCapacity(c, rt, target), nil
}

// checkApache reads the files apache2ctl lists (-t -D DUMP_INCLUDES) and its
// loaded modules (-D DUMP_MODULES, as -M): APACHE_CONFDIR=conf when conf is
// given, as Debian's apache2ctl takes it.
func checkApache(conf string, target int) (*proxycheck.Report, error) {
	var env []string
	if conf != "" {
		env = append(os.Environ(), "APACHE_CONFDIR="+conf)
	}
	out, err := runProgram(env, "apache2ctl", "-t", "-D", "DUMP_INCLUDES", "-D", "DUMP_MODULES")
	if err != nil {
		return nil, err
	}
	names := proxycheck.ParseApacheIncludes(out)
	if len(names) == 0 {
		return nil, errors.New("apache2ctl -t -D DUMP_INCLUDES listed no configuration file")
	}
	var files []proxycheck.ApacheFile
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, err
		}
		files = append(files, proxycheck.ApacheFile{Name: name, Text: string(b)})
	}
	c, err := proxycheck.ParseApache(files, proxycheck.ParseApacheModules(out))
	if err != nil {
		return nil, err
	}
	return proxycheck.ApacheCapacity(c, target), nil
}

// pidAlive returns the process id in pidFile when that process exists, else 0.
func pidAlive(pidFile string) int {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err != nil {
		return 0
	}
	return pid
}

// childPIDs lists the processes whose parent is pid: nginx's workers (and
// its cache manager, whose limits are the same).
func childPIDs(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var kids []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		status, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "PPid:"); ok && strings.TrimSpace(v) == strconv.Itoa(pid) {
				kids = append(kids, child)
			}
		}
	}
	return kids
}

// openFileLimit reads the soft limit of open files of a process.
func openFileLimit(pid int) (int, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "limits"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				return strconv.Atoi(f[0])
			}
		}
	}
	return 0, errors.New("no \"Max open files\" line")
}
