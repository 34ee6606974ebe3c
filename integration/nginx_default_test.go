//go:build unix

package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// readmeInstallSite is the README's "## Install" block that configures
// the installed package and puts nginx in front, as TestDebianPackage and
// TestReadmeNginxSiteBesideStockDefault run it.
var readmeInstallSite = []string{
	"editor /etc/stardust/stardust.toml",
	"stardust --check --config /etc/stardust/stardust.toml",
	"systemctl restart stardust",
	"cp /usr/share/stardust/nginx/static.conf /etc/nginx/sites-available/stardust",
	"ln -s /etc/nginx/sites-available/stardust /etc/nginx/sites-enabled/stardust",
	"rm -f /etc/nginx/sites-enabled/default",
	"nginx -t && systemctl reload nginx",
}

// TestReadmeNginxSiteBesideStockDefault: the README's site steps on a copy
// of the stock Debian /etc/nginx, whose default site (the welcome page,
// listen 80 default_server) is still enabled, make http://HOST/comet/
// reach Stardust for a host name the site file does not name. It got
// nginx's 404 from the default site.
func TestReadmeNginxSiteBesideStockDefault(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/etc/nginx/sites-enabled/default"); err != nil {
		missingDependency(t, "/etc/nginx/sites-enabled/default: "+err.Error()+" (the Debian package nginx as installed)")
	}
	nginx := requireProgram(t, "nginx", "nginx")
	steps := readmeIndentedBlocks(t, "## Install", 1, readmeInstallSite...)
	dir := t.TempDir()
	confDir := filepath.Join(dir, "nginx")
	if err := copyTree("/etc/nginx", confDir); err != nil {
		t.Fatal(err)
	}
	for _, line := range steps[3 : len(steps)-1] { // cp, ln...: the package's files are conf/'s
		line = strings.ReplaceAll(line, "/usr/share/stardust/nginx/", filepath.Join(repoRoot(t), "conf", "nginx")+"/")
		shell(t, dir, nil, strings.ReplaceAll(line, "/etc/nginx/", confDir+"/"))
	}
	siteRoot := filepath.Join(dir, "site")
	writeFile(t, filepath.Join(siteRoot, "index.html"), "<!doctype html><title>site</title>\n")
	back, web := freeAddr(t), freeAddr(t)
	installed := filepath.Join(confDir, "sites-available", "stardust")
	writeFile(t, installed, rewritePlaceholders(t, installed, readFile(t, installed),
		placeholderHTTP, back, placeholderSiteRoot, siteRoot))
	redirectNginxStock(t, dir, confDir, web)
	p := startProcess(t, "nginx", dir, nginx, "-p", confDir, "-c", filepath.Join(confDir, "nginx.conf"), "-g", "daemon off;")
	p.waitListening(t, web)
	s := startProcess(t, "stardust", dir, stardustBinary(t), "--listen", back, "--log-level", "warn")
	s.waitListening(t, back)

	// Host: 127.0.0.1:PORT, as curl http://HOST/comet/ sends it.
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get("http://" + web + "/comet/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var info struct{ Name string }
	if resp.StatusCode != 200 || json.Unmarshal(body, &info) != nil || info.Name != "Stardust COMET Server" {
		t.Errorf("GET http://%s/comet/ through nginx: %s %.200s, want Stardust's info", web, resp.Status, body)
	}
}
