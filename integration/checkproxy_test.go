//go:build unix

package integration

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckProxy runs stardust --check-proxy against the real nginx and
// apache2, in a copy of Debian's /etc/nginx or /etc/apache2: as installed
// (too small for 1,000 held clients), and with the shipped main
// configuration installed by the commands of its header (enough for the
// 5,000 and 1,000 that TestCapacity carries). The stock nginx runs, so that
// the check reads its workers. The check is the last command
// of each header, run with /etc redirected to the copy.
func TestCheckProxy(t *testing.T) {
	t.Parallel()
	bin := stardustBinary(t)
	for _, tc := range []struct {
		server  string
		main    mainConfig
		clients int
		code    int
		want    string
	}{
		{"nginx", mainStock, 1000, 1, "TOO SMALL for 1,000 held clients"},
		{"nginx", mainShipped, 5000, 0, "OK: enough for 5,000 held clients"},
		{"apache2", mainStock, 1000, 1, "TOO SMALL for 1,000 held clients"},
		{"apache2", mainShipped, 1000, 0, "OK: enough for 1,000 held clients"},
	} {
		t.Run(tc.server+"/"+string(tc.main), func(t *testing.T) {
			t.Parallel()
			requireProgram(t, tc.server, tc.server)
			etc := filepath.Join("/etc", tc.server)
			if _, err := os.Stat(etc); err != nil {
				missingDependency(t, fmt.Sprintf("%s: %v (install the Debian package %s)", etc, err, tc.server))
			}
			dir := t.TempDir()
			confDir := filepath.Join(dir, tc.server)
			if err := copyTree(etc, confDir); err != nil {
				t.Fatal(err)
			}
			var env []string
			if tc.server == "apache2" {
				env = apacheStockEnv(t, dir, confDir)
				// Stardust's site, so that the check finds its ProxyPass.
				site := readFile(t, filepath.Join(repoRoot(t), "conf", "apache2", "static.conf"))
				for _, cmd := range headerCommands(site, "a2enmod", "cp", "a2ensite") {
					runHeaderCommand(t, cmd, etc, confDir, env)
				}
			}
			src := shippedMainFile(tc.server)
			header := readFile(t, filepath.Join(repoRoot(t), src))
			if tc.main == mainShipped {
				installShippedMain(t, tc.server, etc, confDir, env)
			}
			spec := tc.server + "=" + confDir
			running := "" // what the check says of a running nginx
			if tc.server == "nginx" {
				addr := freeAddr(t)
				redirectNginxStock(t, dir, confDir, addr)
				spec = tc.server + "=" + filepath.Join(confDir, "nginx.conf")
				if tc.main == mainStock {
					// Running: the check counts its workers and reads their
					// open-file limit from /proc.
					program := requireProgram(t, "nginx", "nginx")
					web := startProcess(t, "nginx", dir, program, "-p", confDir, "-c", filepath.Join(confDir, "nginx.conf"), "-g", "daemon off;")
					web.waitListening(t, addr)
					running = "(auto: running workers)"
				}
			}
			checks := headerCommands(header, "stardust")
			if len(checks) != 1 || strings.Join(checks[0], " ") != "stardust --check-proxy "+tc.server {
				t.Fatalf("%s: want the header to end with \"#   stardust --check-proxy %s\", found %q", src, tc.server, checks)
			}
			cmd := exec.Command(bin, "--check-proxy", spec, "--check-proxy-clients", fmt.Sprint(tc.clients))
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			t.Logf("stardust --check-proxy %s --check-proxy-clients %d:\n%s", spec, tc.clients, out)
			if code != tc.code || !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), running) {
				t.Errorf("exit %d, want %d, and output with %q and %q", code, tc.code, tc.want, running)
			}
		})
	}
}

// TestSiteHeadersEndWithCheck: each site file's commands to enable it end
// with the check of the web server's capacity, which TestCheckProxy runs.
func TestSiteHeadersEndWithCheck(t *testing.T) {
	t.Parallel()
	for _, s := range webServerSetups() {
		site := readFile(t, filepath.Join(repoRoot(t), s.file()))
		cmds := headerCommands(site, "cp", "ln", "a2enmod", "a2ensite", "nginx", "apache2ctl", "stardust")
		var enable []string
		for _, c := range cmds {
			line := strings.Join(c, " ")
			if !strings.HasPrefix(line, "stardust --listen") && !strings.HasPrefix(line, "stardust --config") {
				enable = append(enable, line)
			}
		}
		if len(enable) == 0 || enable[len(enable)-1] != "stardust --check-proxy "+s.server {
			t.Errorf("%s: the commands that enable it, %q, do not end with \"stardust --check-proxy %s\"", s.file(), enable, s.server)
		}
	}
}

// TestReadmeCapacitySnippets: the README's commands to install the main
// configurations and enable each site are those of the files' headers, which
// TestCheckProxy, TestWebServerConfigsOnStockDebian and TestCapacity run
// (with /etc redirected to a copy).
func TestReadmeCapacitySnippets(t *testing.T) {
	t.Parallel()
	readme := readDocs(t)
	files := []string{"conf/nginx/nginx.conf", "conf/apache2/mpm_event.conf"}
	for _, s := range webServerSetups() {
		files = append(files, s.file())
	}
	for _, file := range files {
		text := readFile(t, filepath.Join(repoRoot(t), file))
		var block []string
		for _, c := range headerCommands(text, "cp", "ln", "rm", "a2enmod", "a2ensite", "nginx", "apache2ctl", "stardust") {
			if c[0] == "stardust" && (len(c) < 2 || c[1] != "--check-proxy") {
				continue // how Stardust runs, said in the README's prose
			}
			block = append(block, "    "+strings.Join(c, " "))
		}
		if !strings.Contains(readme, "\n"+strings.Join(block, "\n")+"\n") {
			t.Errorf("README.md lacks the commands of %s's header as one block:\n%s", file, strings.Join(block, "\n"))
		}
	}
	unit := readFile(t, filepath.Join(repoRoot(t), "conf", "systemd", "stardust.service"))
	if !strings.Contains(unit, "\nLimitNOFILE=65536\n") || !strings.Contains(readme, "`LimitNOFILE=65536`") {
		t.Errorf("conf/systemd/stardust.service and the README should agree on LimitNOFILE=65536")
	}
}
