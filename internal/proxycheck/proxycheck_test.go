package proxycheck

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// debianNginxStock is the part of Debian's stock /etc/nginx/nginx.conf
// that matters, as nginx -T prints it, with a site after it.
const debianNginxStock = `# configuration file /etc/nginx/nginx.conf:
user www-data;
worker_processes auto;
pid /run/nginx.pid;
error_log /var/log/nginx/error.log;
include /etc/nginx/modules-enabled/*.conf;

events {
	worker_connections 768;
	# multi_accept on;
}

http {
	sendfile on;
	include /etc/nginx/sites-enabled/*;
}

# configuration file /etc/nginx/sites-enabled/stardust:
map $http_upgrade $stardust_connection_upgrade {
    default upgrade;
    ''      '';
}
server {
    listen 80;
    location /comet {
        proxy_pass http://stardust_static;
        proxy_set_header Connection $stardust_connection_upgrade;
        # worker_connections 5; in a comment
        add_header X-Note "a ; and a { in quotes";
    }
}
`

func TestParseNginx(t *testing.T) {
	for _, tc := range []struct {
		name string
		dump string
		want NginxConfig
		err  string // part of the error, "" for none
	}{
		{"debian stock", debianNginxStock, NginxConfig{WorkerProcesses: "auto", WorkerConnections: 768, PidFile: "/run/nginx.pid",
			Files: []string{"/etc/nginx/nginx.conf", "/etc/nginx/sites-enabled/stardust"}}, ""},
		{"no file markers", "worker_processes 4; worker_rlimit_nofile 9000; events { worker_connections 4096; multi_accept on; }",
			NginxConfig{WorkerProcesses: "4", WorkerRlimitNofile: 9000, WorkerConnections: 4096, MultiAccept: true}, ""},
		{"quoted values", `worker_processes "2"; events { worker_connections '100'; }`,
			NginxConfig{WorkerProcesses: "2", WorkerConnections: 100}, ""},
		{"only main and events count", "http { worker_connections 5; server { worker_processes 9; } } events { worker_connections 6; }",
			NginxConfig{WorkerConnections: 6}, ""},
		{"later wins", "events { worker_connections 1; } events { worker_connections 2; }", NginxConfig{WorkerConnections: 2}, ""},
		{"empty", "", NginxConfig{}, ""},
		{"unclosed block", "events { worker_connections 1;", NginxConfig{}, `block "events" not closed`},
		{"missing semicolon", "events { worker_connections 1 }", NginxConfig{}, `"worker_connections" without ';'`},
		{"stray brace", "}", NginxConfig{}, "unexpected '}'"},
		{"unclosed quote", `pid "/run/x;`, NginxConfig{}, "quoted string not closed"},
		{"not a number", "events { worker_connections many; }", NginxConfig{}, `want a number, got "many"`},
		{"negative", "worker_rlimit_nofile -1;", NginxConfig{}, "want a number"},
		{"bad worker_processes", "worker_processes some;", NginxConfig{}, "want a number or auto"},
		{"two values", "worker_processes 1 2;", NginxConfig{}, "want one value"},
		{"error names the file", "# configuration file /etc/nginx/x.conf:\nevents {\n worker_connections x;\n}\n", NginxConfig{}, "/etc/nginx/x.conf line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseNginx(tc.dump)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrSyntax) {
					t.Fatalf("error %v, want one with %q wrapping ErrSyntax", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.WorkerProcesses != tc.want.WorkerProcesses || got.WorkerConnections != tc.want.WorkerConnections ||
				got.WorkerRlimitNofile != tc.want.WorkerRlimitNofile || got.MultiAccept != tc.want.MultiAccept ||
				got.PidFile != tc.want.PidFile || !slices.Equal(got.Files, tc.want.Files) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// debianApacheStock is Debian's mpm_event.conf with, around it, what a
// configuration has: sections for other MPMs, continuation lines.
var debianApacheStock = []ApacheFile{
	{"/etc/apache2/apache2.conf", "Timeout 300\n<IfModule mpm_prefork_module>\n  MaxRequestWorkers 9\n</IfModule>\n"},
	{"/etc/apache2/mods-enabled/mpm_event.conf", `# event MPM
StartServers            2
MinSpareThreads         25
MaxSpareThreads         75
ThreadLimit             64
ThreadsPerChild         25
MaxRequestWorkers       150
MaxConnectionsPerChild  0
`},
	{"/etc/apache2/sites-enabled/stardust.conf", "<VirtualHost *:80>\n  ProxyPass /comet \\\n    http://127.0.0.1:5742/comet timeout=3600\n  <IfModule !mod_proxy.c>\n    ServerLimit 1\n  </IfModule>\n</VirtualHost>\n"},
}

var eventModules = []string{"core_module", "mpm_event_module", "proxy_module", "proxy_http_module"}

func TestParseApache(t *testing.T) {
	c, err := ParseApache(debianApacheStock, eventModules)
	if err != nil {
		t.Fatal(err)
	}
	want := ApacheConfig{MPM: "event", ThreadLimit: 64, ThreadsPerChild: 25, MaxRequestWorkers: 150}
	if c.MPM != want.MPM || c.ThreadLimit != want.ThreadLimit || c.ThreadsPerChild != want.ThreadsPerChild ||
		c.MaxRequestWorkers != want.MaxRequestWorkers || c.ServerLimit != 0 {
		t.Errorf("got %+v, want %+v", c, want)
	}
	if len(c.ProxyPasses) != 1 || c.ProxyPasses[0] != "ProxyPass /comet http://127.0.0.1:5742/comet timeout=3600" {
		t.Errorf("ProxyPass lines %q", c.ProxyPasses)
	}
	for _, tc := range []struct{ name, text, err string }{
		{"unclosed", "<IfModule x>\n", "section <ifmodule> not closed"},
		{"stray close", "</IfModule>\n", "closes no open section"},
		{"mismatched", "<Location />\n</Directory>\n", "closes no open section"},
		{"no bracket", "<IfModule x\n", "without '>'"},
		{"empty section", "<>\n", "empty section"},
		{"not a number", "MaxRequestWorkers lots\n", `want a number, got "lots"`},
		{"two values", "ServerLimit 1 2\n", "want one value"},
		{"bad factor", "AsyncRequestWorkerFactor x\n", "want a number"},
		{"too deep", strings.Repeat("<If x>\n", apacheSectionLimit+1), "nested too deep"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseApache([]ApacheFile{{"/x.conf", tc.text}}, eventModules)
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), "/x.conf") {
				t.Errorf("error %v, want one naming /x.conf with %q", err, tc.err)
			}
		})
	}
}

func TestParseApacheOutputs(t *testing.T) {
	includes := "Included configuration files:\n  (*) /etc/apache2/apache2.conf\n    (146) /etc/apache2/mods-enabled/mpm_event.load\n    (147) /etc/apache2/mods-enabled/mpm_event.conf\nAH00558: apache2: Could not reliably determine\n"
	if got := ParseApacheIncludes(includes); !slices.Equal(got, []string{"/etc/apache2/apache2.conf", "/etc/apache2/mods-enabled/mpm_event.load", "/etc/apache2/mods-enabled/mpm_event.conf"}) {
		t.Errorf("includes: %q", got)
	}
	modules := "Loaded Modules:\n core_module (static)\n so_module (static)\n mpm_event_module (shared)\n proxy_module (shared)\n"
	if got := ParseApacheModules(modules); !slices.Equal(got, []string{"core_module", "so_module", "mpm_event_module", "proxy_module"}) {
		t.Errorf("modules: %q", got)
	}
}

// shipped reads a main configuration of conf/.
func shipped(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "conf", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestNginxCapacity(t *testing.T) {
	stock, err := ParseNginx(debianNginxStock)
	if err != nil {
		t.Fatal(err)
	}
	ours, err := ParseNginx(shipped(t, "nginx/nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	systemd := NginxRuntime{CPUs: 2, OpenFiles: 1024, OpenFilesFrom: "systemd's default"}
	for _, tc := range []struct {
		name            string
		c               *NginxConfig
		rt              NginxRuntime
		target          int
		held, best      int
		ok              bool
		change, notSaid string
	}{
		{"stock", stock, systemd, 1000, 384, 768, false, "worker_connections 3072;", ""},
		{"stock, 4 running workers", stock, NginxRuntime{CPUs: 2, Workers: 4, OpenFiles: 1024}, 300, 384, 1536, true, "", "TOO SMALL"},
		{"stock, file limit 512", stock, NginxRuntime{CPUs: 1, OpenFiles: 512}, 1000, 224, 224, false, "worker_rlimit_nofile", ""},
		{"shipped", ours, systemd, 5000, 8192, 16384, true, "", "TOO SMALL"},
		{"shipped, too small for 10000", ours, systemd, 10000, 8192, 16384, false, "worker_connections 20480;", "install"},
		{"defaults", &NginxConfig{}, NginxRuntime{CPUs: 8, OpenFiles: 1024}, 100, 256, 256, true, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NginxCapacity(tc.c, tc.rt, tc.target)
			var out strings.Builder
			r.Write(&out)
			if r.HeldClients != tc.held || r.BestCase != tc.best || r.OK() != tc.ok {
				t.Errorf("held %d best %d ok %v, want %d %d %v:\n%s", r.HeldClients, r.BestCase, r.OK(), tc.held, tc.best, tc.ok, out.String())
			}
			if !strings.Contains(out.String(), tc.change) || (tc.notSaid != "" && strings.Contains(out.String(), tc.notSaid)) {
				t.Errorf("report lacks %q or says %q:\n%s", tc.change, tc.notSaid, out.String())
			}
		})
	}
}

func TestApacheCapacity(t *testing.T) {
	stock, err := ParseApache(debianApacheStock, eventModules)
	if err != nil {
		t.Fatal(err)
	}
	ours, err := ParseApache([]ApacheFile{{"mpm_event.conf", shipped(t, "apache2/mpm_event.conf")}}, eventModules)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		c      *ApacheConfig
		target int
		held   int
		ok     bool
		say    string
	}{
		{"stock", stock, 1000, 125, false, "ThreadsPerChild 1088, ThreadLimit 1088, ServerLimit 3, MaxRequestWorkers 1088"},
		{"shipped", ours, 1000, 1984, true, "OK: enough for 1,000"},
		{"shipped, too small for 5000", ours, 5000, 1984, false, "ServerLimit 3, MaxRequestWorkers 5120 in /etc/apache2/mods-available/mpm_event.conf (one process: see conf/apache2/mpm_event.conf), APACHE_ULIMIT_MAX_FILES='ulimit -n 16384'"},
		{"several processes", &ApacheConfig{MPM: "event", ThreadsPerChild: 64, ServerLimit: 32, MaxRequestWorkers: 2048}, 1000, 1984, true, "waits for a thread of its own process"},
		{"defaults", &ApacheConfig{MPM: "event"}, 100, 375, true, "MaxRequestWorkers: 400 threads"},
		{"above ServerLimit", &ApacheConfig{MPM: "event", ThreadsPerChild: 50, MaxRequestWorkers: 5000}, 100, 750, true, "apache2 uses 800"},
		{"above ThreadLimit", &ApacheConfig{MPM: "worker", ThreadsPerChild: 100, ServerLimit: 10}, 100, 576, true, "apache2 uses 64"},
		{"rounded to processes", &ApacheConfig{MPM: "event", MaxRequestWorkers: 170}, 100, 125, true, "MaxRequestWorkers: 150"},
		{"prefork", &ApacheConfig{MPM: "prefork", MaxRequestWorkers: 150}, 1000, 140, false, "a2enmod mpm_event"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ApacheCapacity(tc.c, tc.target)
			var out strings.Builder
			r.Write(&out)
			if r.HeldClients != tc.held || r.OK() != tc.ok || !strings.Contains(out.String(), tc.say) {
				t.Errorf("held %d ok %v, want %d %v and %q:\n%s", r.HeldClients, r.OK(), tc.held, tc.ok, tc.say, out.String())
			}
		})
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 16384: "16,384", 1234567: "1,234,567", -1500: "-1,500"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

// FuzzParseNginx: any text either parses or fails with ErrSyntax, never
// panics, and what parses holds no negative limit.
func FuzzParseNginx(f *testing.F) {
	f.Add(debianNginxStock)
	f.Add("worker_processes 4; worker_rlimit_nofile 9000; events { worker_connections 4096; multi_accept on; }")
	f.Add(`pid "/run/x\";"; events { worker_connections '1'; }`)
	f.Add("events {\n}\n}\n")
	f.Fuzz(func(t *testing.T, dump string) {
		c, err := ParseNginx(dump)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("error %v does not wrap ErrSyntax", err)
			}
			return
		}
		if c.WorkerConnections < 0 || c.WorkerRlimitNofile < 0 {
			t.Fatalf("negative limits: %+v", c)
		}
		NginxCapacity(c, NginxRuntime{CPUs: 2, OpenFiles: 1024}, 1000)
	})
}

// FuzzParseApache: the same for apache2 configuration files.
func FuzzParseApache(f *testing.F) {
	for _, file := range debianApacheStock {
		f.Add(file.Text)
	}
	f.Add("<IfModule !mod_x.c>\nThreadsPerChild 64 \\\n\n</IfModule>\n")
	f.Add("ServerLimit 0\nMaxRequestWorkers 0\nThreadsPerChild 0\nThreadLimit 0\n")
	f.Fuzz(func(t *testing.T, text string) {
		c, err := ParseApache([]ApacheFile{{"/f.conf", text}}, eventModules)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("error %v does not wrap ErrSyntax", err)
			}
			return
		}
		r := ApacheCapacity(c, 1000)
		if r.HeldClients < 0 {
			t.Fatalf("negative capacity %d for %+v", r.HeldClients, c)
		}
	})
}
