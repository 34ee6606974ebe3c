//go:build unix

package integration

// The Debian package, built, checked, installed for real, used and purged,
// following the README's Install, From source and Releasing sections as
// written. This changes the machine while it runs (it is meant for CI and
// for a developer's own machine, as root) and puts it back as it was.

import (
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// releaseVersion is what `git describe` prints on the commit the README's
// release steps tag: the test cannot tag the repository, so it sets VERSION.
const releaseVersion = "v1.2.0"

// debVersion is releaseVersion in the form the package carries.
const debVersion = "1.2.0"

// debCommandTimeout bounds each make, dpkg, apt or lintian run: the first
// make on a fresh machine compiles the standard library for two architectures.
const debCommandTimeout = 10 * time.Minute

func TestDebianPackage(t *testing.T) {
	if os.Geteuid() != 0 {
		missingDependency(t, "installing a Debian package needs root")
	}
	for _, p := range [][2]string{{"dpkg-deb", "dpkg"}, {"apt", "apt"}, {"lintian", "lintian"},
		{"make", "make"}, {"setpriv", "util-linux"}, {"nginx", "nginx"}, {"sha256sum", "coreutils"}} {
		requireProgram(t, p[0], p[1])
	}
	arch := runtime.GOARCH
	if arch != "amd64" && arch != "arm64" {
		t.Skipf("packages are built for amd64 and arm64, and this machine is %s", arch)
	}
	lockDebTest(t)
	checkNoStardustInstalled(t)
	work := t.TempDir() // the README's commands run here: ./dist is work/dist
	dist := filepath.Join(work, "dist")
	env := append(os.Environ(), "DIST="+dist, "VERSION="+releaseVersion, "DEBIAN_FRONTEND=noninteractive")

	// Releasing: make dist, then check the sums.
	release := readmeIndentedBlocks(t, "## Releasing", 0,
		"git tag -a v1.2.0 -m 'Stardust 1.2.0'",
		"make dist",
		"(cd dist && sha256sum -c SHA256SUMS)")
	t.Logf("not run: %s (tags the repository; VERSION=%s stands for it)", release[0], releaseVersion)
	shell(t, repoRoot(t), env, release[1])
	shell(t, work, env, release[2])
	checkDistFiles(t, dist)
	var debs []string
	for _, a := range []string{"amd64", "arm64"} {
		deb := filepath.Join(dist, "stardust_"+debVersion+"_"+a+".deb")
		debs = append(debs, deb)
		t.Run("package-"+a, func(t *testing.T) { checkPackageFile(t, deb, a) })
	}
	t.Run("lintian", func(t *testing.T) { checkLintian(t, debs...) })

	// From source: make build.
	source := readmeIndentedBlocks(t, "## From source", 0, "make build", "bin/stardust --version")
	shell(t, repoRoot(t), nil, source[0])
	if out := shell(t, repoRoot(t), nil, source[1]); !strings.HasPrefix(out, "stardust ") {
		t.Errorf("%s printed %q, want stardust and the version", source[1], out)
	}

	// Install: make deb again (the same files, so SHA256SUMS still holds),
	// then apt install.
	install := readmeIndentedBlocks(t, "## Install", 0, "make deb", "apt install ./dist/stardust_*_amd64.deb")
	shell(t, repoRoot(t), env, install[0])
	shell(t, work, env, release[2])
	before := stardustPaths(t)
	t.Cleanup(func() { purgeIfInstalled(t) })
	shell(t, work, env, strings.ReplaceAll(install[1], "amd64", arch))
	checkInstalled(t)

	// Configure: check the installed configuration, restart, enable a site.
	configure := readmeIndentedBlocks(t, "## Install", 1, readmeInstallSite...) // nginx_default_test.go
	t.Logf("not run: %s (interactive)", configure[0])
	if out := shell(t, work, env, configure[1]); !strings.Contains(out, "configuration /etc/stardust/stardust.toml is ok") {
		t.Errorf("%s printed %q", configure[1], out)
	}
	if systemdRuns() {
		shell(t, work, env, configure[2])
	} else {
		t.Logf("not run: %s (systemd does not run here)", configure[2])
	}
	t.Run("as-the-unit-runs-it", checkRunsAsTheUnit)
	t.Run("nginx-site", func(t *testing.T) { checkNginxSite(t, configure[3:]) })

	t.Run("upgrade-keeps-local-edits", func(t *testing.T) { checkUpgrade(t, work, env, arch) })

	// Remove keeps the configuration and the user; purge leaves nothing.
	remove := readmeIndentedBlocks(t, "## Install", 2, "dpkg --remove stardust", "dpkg --purge stardust")
	shell(t, work, env, remove[0])
	checkRemoved(t)
	shell(t, work, env, remove[1])
	checkPurged(t, before)
}

// lockDebTest keeps two runs of this test on one machine (two checkouts, two
// engineers) from installing and purging the same package at once.
func lockDebTest(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "stardust-deb-test.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() }) // closing releases the lock, after the purge
}

// checkNoStardustInstalled refuses to run on a machine that has Stardust
// installed already: the test purges what it installs, and must not take an
// operator's installation, configuration or user with it.
func checkNoStardustInstalled(t *testing.T) {
	t.Helper()
	if status := packageStatus(); status != "" {
		t.Fatalf("the stardust package is on this machine already (%s); the test installs and purges its own: remove it first with dpkg --purge stardust", status)
	}
	for _, p := range []string{"/usr/bin/stardust", "/etc/stardust", "/usr/share/stardust"} {
		if _, err := os.Lstat(p); err == nil {
			t.Fatalf("%s exists though no stardust package is installed; the test would install over it", p)
		}
	}
	if _, err := osuser.Lookup("stardust"); err == nil {
		t.Fatal("a stardust user exists though no stardust package is installed; the test's purge would delete it")
	}
}

// packageStatus is dpkg's status of the stardust package, "" when dpkg does
// not know it (never installed, or purged).
func packageStatus() string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${db:Status-Abbrev}", "stardust").Output()
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(string(out))
	if s == "un" || s == "pn" {
		return ""
	}
	return s
}

// purgeIfInstalled puts the machine back if the test stopped half way.
func purgeIfInstalled(t *testing.T) {
	if packageStatus() == "" {
		return
	}
	out, err := exec.Command("dpkg", "--purge", "stardust").CombinedOutput()
	if err != nil {
		t.Errorf("cleanup: dpkg --purge stardust: %v\n%s", err, out)
	}
}

// readmeBlock returns the n-th indented code block under a README heading,
// one command a line with trailing comments cut, and fails unless it is the
// commands the test runs.
func readmeIndentedBlocks(t *testing.T, heading string, n int, want ...string) []string {
	t.Helper()
	readme := readDocs(t)
	_, section, ok := strings.Cut(readme, "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no heading %q", heading)
	}
	if end := strings.Index(section, "\n#"); end >= 0 {
		section = section[:end]
	}
	var blocks [][]string
	inBlock := false
	for _, line := range strings.Split(section, "\n") {
		code, isCode := strings.CutPrefix(line, "    ")
		if !isCode {
			inBlock = false
			continue
		}
		if !inBlock {
			blocks = append(blocks, nil)
			inBlock = true
		}
		if i := strings.Index(code, "  #"); i >= 0 {
			code = code[:i]
		}
		blocks[len(blocks)-1] = append(blocks[len(blocks)-1], strings.TrimSpace(code))
	}
	if n >= len(blocks) {
		t.Fatalf("README.md %q: want code block %d, found %d blocks", heading, n, len(blocks))
	}
	if !slices.Equal(blocks[n], want) {
		t.Fatalf("README.md %q block %d is\n%s\nbut the test runs\n%s", heading, n, strings.Join(blocks[n], "\n"), strings.Join(want, "\n"))
	}
	return blocks[n]
}

// shell runs a README command line as written with sh in dir, and returns
// what it printed; env nil is the test's own environment.
func shell(t *testing.T, dir string, env []string, line string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), debCommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", line)
	cmd.Dir = dir
	cmd.Env = env
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s (in %s): %v\n%s", line, dir, err, out)
	}
	t.Logf("ran %s (%v)", line, time.Since(start).Round(100*time.Millisecond))
	return strings.TrimSpace(string(out))
}

// run runs a program and returns its standard output, failing on an error.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// checkDistFiles expects exactly the files make dist promises.
func checkDistFiles(t *testing.T, dist string) {
	t.Helper()
	entries, err := os.ReadDir(dist)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		if !e.IsDir() {
			got = append(got, e.Name())
		}
	}
	want := []string{"SHA256SUMS",
		"stardust_" + debVersion + "_amd64.deb", "stardust_" + debVersion + "_arm64.deb",
		"stardust_" + releaseVersion + "_linux_amd64.tar.gz", "stardust_" + releaseVersion + "_linux_arm64.tar.gz"}
	if !slices.Equal(got, want) {
		t.Fatalf("dist/ has %q, want %q", got, want)
	}
	sums := readFile(t, filepath.Join(dist, "SHA256SUMS"))
	for _, f := range want[1:] {
		if !strings.Contains(sums, "  "+f+"\n") {
			t.Errorf("SHA256SUMS does not list %s:\n%s", f, sums)
		}
	}
	for _, a := range []string{"amd64", "arm64"} {
		name := "stardust_" + releaseVersion + "_linux_" + a
		list := run(t, "tar", "-tzvf", filepath.Join(dist, name+".tar.gz"))
		files := map[string]string{} // path -> mode
		for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
			f := strings.Fields(line)
			if len(f) >= 6 && !strings.HasSuffix(f[5], "/") {
				files[strings.TrimPrefix(f[5], name+"/")] = f[0]
			}
		}
		wantFiles := map[string]string{"stardust": "-rwxr-xr-x", "stardust.1": "-rw-r--r--", "README.md": "-rw-r--r--",
			"conf/stardust.toml": "-rw-r--r--", "conf/stardust-fcgi.toml": "-rw-r--r--", "conf/stardust-redis.toml": "-rw-r--r--",
			"conf/systemd/stardust.service": "-rw-r--r--"}
		for _, site := range siteFiles(t) {
			wantFiles["conf/"+site] = "-rw-r--r--"
		}
		for _, page := range docFiles(t, true) {
			wantFiles[page] = "-rw-r--r--"
		}
		if fmt.Sprint(files) != fmt.Sprint(wantFiles) {
			t.Errorf("%s.tar.gz holds\n%v\nwant\n%v", name, files, wantFiles)
		}
	}
}

// etcConfigs are the configurations the package installs, sorted: every
// one the README tells its users to run with.
func etcConfigs() []string {
	return []string{"/etc/stardust/stardust-fcgi.toml", "/etc/stardust/stardust-redis.toml", "/etc/stardust/stardust.toml"}
}

// siteFiles are the web server files in conf/, as "nginx/static.conf".
func siteFiles(t *testing.T) []string {
	t.Helper()
	var sites []string
	for _, server := range []string{"nginx", "apache2"} {
		matches, err := filepath.Glob(filepath.Join(repoRoot(t), "conf", server, "*.conf"))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range matches {
			sites = append(sites, server+"/"+filepath.Base(m))
		}
	}
	if len(sites) < 6 {
		t.Fatalf("want at least the six site files in conf/, found %v", sites)
	}
	return sites
}

// docFiles returns the files under docs/ as "docs/..." paths: with all,
// every one (the archives copy the directory), else the pages docs/*.md
// (the package ships those, gzipped, beside the README).
func docFiles(t *testing.T, all bool) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(repoRoot(t), "docs"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(repoRoot(t), path)
		if all || filepath.Dir(rel) == "docs" && strings.HasSuffix(rel, ".md") {
			out = append(out, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil || len(out) == 0 {
		t.Fatalf("docs/: %v, %d files", err, len(out))
	}
	return out
}

// checkPackageFile looks into a .deb with dpkg-deb and lintian, without
// installing it.
func checkPackageFile(t *testing.T, deb, arch string) {
	fields := map[string]string{}
	for _, f := range []string{"Package", "Version", "Architecture", "Depends", "Maintainer", "Description"} {
		fields[f] = strings.TrimSpace(run(t, "dpkg-deb", "-f", deb, f))
	}
	if fields["Package"] != "stardust" || fields["Version"] != debVersion || fields["Architecture"] != arch || fields["Depends"] != "adduser" {
		t.Errorf("control fields %v, want stardust %s %s depending on adduser", fields, debVersion, arch)
	}
	conffiles := strings.Fields(run(t, "dpkg-deb", "-I", deb, "conffiles"))
	slices.Sort(conffiles)
	if want := etcConfigs(); !slices.Equal(conffiles, want) {
		t.Errorf("conffiles %q, want %q", conffiles, want)
	}

	files := map[string]string{} // path -> mode and owner
	for _, line := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "-c", deb)), "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && !strings.HasSuffix(f[5], "/") {
			files[strings.TrimPrefix(f[5], ".")] = f[0] + " " + f[1]
		}
	}
	const file, program = "-rw-r--r-- root/root", "-rwxr-xr-x root/root"
	want := map[string]string{
		"/usr/bin/stardust":                     program,
		"/etc/stardust/stardust.toml":           file,
		"/etc/stardust/stardust-fcgi.toml":      file,
		"/etc/stardust/stardust-redis.toml":     file,
		"/lib/systemd/system/stardust.service":  file,
		"/usr/share/man/man1/stardust.1.gz":     file,
		"/usr/share/doc/stardust/README.md.gz":  file,
		"/usr/share/doc/stardust/copyright":     file,
		"/usr/share/doc/stardust/changelog.gz":  file,
		"/usr/share/lintian/overrides/stardust": file,
	}
	for _, site := range siteFiles(t) {
		want["/usr/share/stardust/"+site] = file
	}
	for _, page := range docFiles(t, false) {
		want["/usr/share/doc/stardust/"+page+".gz"] = file
	}
	if fmt.Sprint(files) != fmt.Sprint(want) {
		t.Errorf("%s holds\n%v\nwant\n%v", filepath.Base(deb), files, want)
	}

	// The program inside is a static Linux binary for arch.
	root := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, root)
	bin, err := elf.Open(filepath.Join(root, "usr/bin/stardust"))
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	machine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
	if bin.Machine != machine {
		t.Errorf("usr/bin/stardust is for %v, want %v", bin.Machine, machine)
	}
	for _, p := range bin.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("usr/bin/stardust asks for a dynamic loader; want a static binary (CGO_ENABLED=0)")
		}
	}
	copyright := readFile(t, filepath.Join(root, "usr/share/doc/stardust/copyright"))
	for _, want := range []string{"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n",
		"\nFiles: github.com/gorilla/websocket/*\n", "\nFiles: go/*\n",
		"\nFiles: *\nCopyright: ", " Stardust for Go maintainers\nLicense: Apache-2.0\n"} {
		if !strings.Contains(copyright, want) {
			t.Errorf("copyright lacks %q", want)
		}
	}
}

// checkLintian has lintian look at the packages (at once: it is slow to
// start) and fails on any error; warnings are logged.
func checkLintian(t *testing.T, debs ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), debCommandTimeout)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, "lintian", append([]string{"--fail-on", "error"}, debs...)...).CombinedOutput()
	t.Logf("lintian (%v):\n%s", time.Since(start).Round(100*time.Millisecond), out)
	if err != nil {
		t.Errorf("lintian reports errors: %v", err)
	}
}

// stardustPaths lists every path under /etc, /usr and /var whose name
// mentions stardust (dpkg's own log aside), to compare before and after.
func stardustPaths(t *testing.T) []string {
	t.Helper()
	var paths []string
	for _, root := range []string{"/etc", "/usr", "/var"} {
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return nil // unreadable or vanished: not ours
			}
			if strings.Contains(d.Name(), "stardust") {
				paths = append(paths, path)
				if d.IsDir() {
					return filepath.SkipDir
				}
			}
			return nil
		})
	}
	sort.Strings(paths)
	return paths
}

// systemdRuns is the maintainer scripts' own test.
func systemdRuns() bool {
	st, err := os.Stat("/run/systemd/system")
	return err == nil && st.IsDir()
}

// checkInstalled looks at what the package put on the machine.
func checkInstalled(t *testing.T) {
	t.Helper()
	if s := packageStatus(); s != "ii" {
		t.Fatalf("dpkg status of stardust after the install: %q, want ii", s)
	}
	if out := run(t, "/usr/bin/stardust", "--version"); out != "stardust "+releaseVersion+"\n" {
		t.Errorf("stardust --version printed %q, want stardust %s", out, releaseVersion)
	}
	conffiles := run(t, "dpkg-query", "-W", "-f", "${Conffiles}", "stardust")
	for _, config := range etcConfigs() {
		if !strings.Contains(conffiles, config+" ") {
			t.Errorf("dpkg does not list %s as a conffile: %q", config, conffiles)
		}
		if readFile(t, config) != readFile(t, filepath.Join(repoRoot(t), "conf", filepath.Base(config))) {
			t.Errorf("%s differs from conf/%s", config, filepath.Base(config))
		}
	}

	u, err := osuser.Lookup("stardust")
	if err != nil {
		t.Fatalf("the package made no stardust user: %v", err)
	}
	passwd := strings.Split(strings.TrimSpace(run(t, "getent", "passwd", "stardust")), ":")
	if uid, _ := strconv.Atoi(u.Uid); uid == 0 || uid >= 1000 || len(passwd) != 7 || passwd[5] != "/nonexistent" || !strings.HasSuffix(passwd[6], "nologin") {
		t.Errorf("stardust user %v: want a system user with no home and no login shell", passwd)
	}
	g, err := osuser.LookupGroup("stardust")
	if err != nil {
		t.Fatalf("the package made no stardust group: %v", err)
	}
	for _, config := range etcConfigs() {
		var st syscall.Stat_t
		if err := syscall.Stat(config, &st); err != nil {
			t.Fatal(err)
		}
		if gid, _ := strconv.Atoi(g.Gid); st.Uid != 0 || int(st.Gid) != gid || st.Mode&0o777 != 0o640 {
			t.Errorf("%s is %d:%d %o, want root:stardust 640", config, st.Uid, st.Gid, st.Mode&0o777)
		}
	}

	link, err := os.Readlink("/etc/systemd/system/multi-user.target.wants/stardust.service")
	if err != nil || link != "/lib/systemd/system/stardust.service" {
		t.Errorf("stardust.service not enabled: %q %v", link, err)
	}
	if systemdRuns() {
		if out, err := exec.Command("systemctl", "is-active", "stardust").CombinedOutput(); err != nil {
			t.Errorf("systemd runs, but stardust.service is not active after the install: %s", out)
		}
	}

	// The installed manual page is what the installed program writes.
	f, err := os.Open("/usr/share/man/man1/stardust.1.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	page, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if string(page) != run(t, "/usr/bin/stardust", "--man") {
		t.Error("/usr/share/man/man1/stardust.1.gz is not what /usr/bin/stardust --man prints")
	}
}

// checkRunsAsTheUnit runs the installed unit's ExecStartPre and ExecStart as
// its User, with the installed configuration, on a free loopback port, and
// fetches the info URL.
func checkRunsAsTheUnit(t *testing.T) {
	unit := readFile(t, "/lib/systemd/system/stardust.service")
	keys := map[string]string{}
	for _, line := range strings.Split(unit, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = v
		}
	}
	config, ok := strings.CutPrefix(keys["Environment"], "STARDUST_CONFIG=")
	if !ok || keys["User"] != "stardust" || keys["ExecStartPre"] == "" || keys["ExecStart"] == "" {
		t.Fatalf("unit lacks Environment=STARDUST_CONFIG=, User=stardust, ExecStartPre or ExecStart:\n%s", unit)
	}
	command := func(key string) []string {
		args := strings.Fields(strings.ReplaceAll(keys[key], "${STARDUST_CONFIG}", config))
		// As the unit's User and Group, as systemd runs it.
		return append([]string{"setpriv", "--reuid", "stardust", "--regid", "stardust", "--init-groups"}, args...)
	}
	pre := command("ExecStartPre")
	if !slices.Contains(pre, "--check") {
		t.Errorf("ExecStartPre %q does not --check", keys["ExecStartPre"])
	}
	if out, err := exec.Command(pre[0], pre[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("ExecStartPre as the stardust user: %v\n%s", err, out)
	}
	addr := freeAddr(t)
	expectPortsFreed(t, addr)
	p := startProcess(t, "stardust", "/", append(command("ExecStart"), "--listen", addr)...)
	p.waitListening(t, addr)
	resp, err := http.Get("http://" + addr + "/comet/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info struct{ Name, Version string }
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /comet/: %s %v", resp.Status, err)
	}
	if info.Name != "Stardust COMET Server" || info.Version != releaseVersion {
		t.Errorf("GET /comet/: %+v, want the Stardust COMET Server at %s", info, releaseVersion)
	}
}

// checkNginxSite runs the README's cp, ln and nginx -t with /etc/nginx a
// copy of the stock one.
func checkNginxSite(t *testing.T, lines []string) {
	if _, err := os.Stat("/etc/nginx/nginx.conf"); err != nil {
		missingDependency(t, fmt.Sprintf("/etc/nginx: %v (install the Debian package nginx)", err))
	}
	nginx := requireProgram(t, "nginx", "nginx")
	dir := t.TempDir()
	confDir := filepath.Join(dir, "nginx")
	if err := copyTree("/etc/nginx", confDir); err != nil {
		t.Fatal(err)
	}
	for _, line := range lines[:len(lines)-1] {
		shell(t, dir, nil, strings.ReplaceAll(line, "/etc/nginx/", confDir+"/"))
	}
	if target, err := os.Readlink(filepath.Join(confDir, "sites-enabled", "stardust")); err != nil || target != filepath.Join(confDir, "sites-available", "stardust") {
		t.Fatalf("the README's ln made %q %v", target, err)
	}
	if readFile(t, filepath.Join(confDir, "sites-enabled", "stardust")) != readFile(t, "/usr/share/stardust/nginx/static.conf") {
		t.Fatal("the enabled site is not the installed static.conf")
	}
	if !strings.HasPrefix(lines[len(lines)-1], "nginx -t &&") {
		t.Fatalf("want the last line to be nginx -t, got %q", lines[len(lines)-1])
	}
	redirectNginxStock(t, dir, confDir, freeAddr(t))
	out, err := exec.Command(nginx, "-t", "-p", confDir, "-c", filepath.Join(confDir, "nginx.conf")).CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -t rejects the installed static.conf in a stock Debian layout: %v\n%s", err, out)
	}
	t.Logf("not run: systemctl reload nginx (the test's nginx configuration is a copy)")
}

// checkRemoved: the program and the unit are gone; the configuration and the
// user stay until purge, as with any Debian service.
func checkRemoved(t *testing.T) {
	t.Helper()
	if s := packageStatus(); s != "rc" {
		t.Errorf("dpkg status after remove: %q, want rc (configuration kept)", s)
	}
	for _, gone := range []string{"/usr/bin/stardust", "/lib/systemd/system/stardust.service", "/usr/share/stardust"} {
		if _, err := os.Lstat(gone); err == nil {
			t.Errorf("%s is still there after dpkg --remove", gone)
		}
	}
	if _, err := os.Stat("/etc/stardust/stardust.toml"); err != nil {
		t.Errorf("dpkg --remove took the configuration: %v", err)
	}
	if _, err := osuser.Lookup("stardust"); err != nil {
		t.Errorf("dpkg --remove took the stardust user: %v", err)
	}
	if systemdRuns() {
		if out, err := exec.Command("systemctl", "is-active", "stardust").CombinedOutput(); err == nil {
			t.Errorf("stardust.service still active after dpkg --remove: %s", out)
		}
	}
}

// checkPurged: nothing of the package is left.
func checkPurged(t *testing.T, before []string) {
	t.Helper()
	if s := packageStatus(); s != "" {
		t.Errorf("dpkg still knows stardust after purge: %q", s)
	}
	if after := stardustPaths(t); !slices.Equal(before, after) {
		t.Errorf("paths named stardust before the install:\n%s\nafter the purge:\n%s", strings.Join(before, "\n"), strings.Join(after, "\n"))
	}
	if _, err := osuser.Lookup("stardust"); err == nil {
		t.Error("the stardust user is still there after purge")
	}
	if _, err := osuser.LookupGroup("stardust"); err == nil {
		t.Error("the stardust group is still there after purge")
	}
	if out, _ := exec.Command("dpkg-statoverride", "--list").Output(); strings.Contains(string(out), "stardust") {
		t.Errorf("dpkg-statoverride still lists stardust after purge:\n%s", out)
	}
}

// checkUpgrade edits the installed configuration, builds the next version
// and installs it over the first with dpkg -i: the edit, the file's
// permissions and the user stay, and the new program is in place.
func checkUpgrade(t *testing.T, work string, env []string, arch string) {
	const config = "/etc/stardust/stardust.toml"
	text := readFile(t, config)
	edited := strings.Replace(text, `level = "info"`, `level = "warn"`, 1)
	if edited == text {
		t.Fatalf(`%s has no level = "info" to edit`, config)
	}
	if err := os.WriteFile(config, []byte(edited), 0o640); err != nil {
		t.Fatal(err)
	}
	next := "v1.2.1"
	upEnv := append(slices.Clone(env), "VERSION="+next, "ARCHES="+arch, "DIST="+filepath.Join(work, "next"))
	shell(t, repoRoot(t), upEnv, "make deb")
	shell(t, work, upEnv, "dpkg -i next/stardust_1.2.1_"+arch+".deb")
	if v := strings.TrimSpace(run(t, "dpkg-query", "-W", "-f", "${Version}", "stardust")); v != "1.2.1" {
		t.Errorf("installed version after the upgrade: %q, want 1.2.1", v)
	}
	if out := run(t, "/usr/bin/stardust", "--version"); out != "stardust "+next+"\n" {
		t.Errorf("stardust --version after the upgrade: %q", out)
	}
	if readFile(t, config) != edited {
		t.Errorf("the upgrade replaced the edited %s", config)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(config, &st); err != nil {
		t.Fatal(err)
	}
	if g, err := osuser.LookupGroup("stardust"); err != nil || strconv.Itoa(int(st.Gid)) != g.Gid || st.Mode&0o777 != 0o640 {
		t.Errorf("%s after the upgrade: gid %d mode %o, want the stardust group and 640 (%v)", config, st.Gid, st.Mode&0o777, err)
	}
}
