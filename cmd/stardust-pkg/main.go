// Command stardust-pkg builds the Debian package of Stardust from a built
// binary, its manual page and the repository's conf/, README.md and docs/, with nfpm
// as a library. `make deb` runs it once per architecture:
//
//	stardust-pkg --binary bin/linux_amd64/stardust --arch amd64 \
//	  --version "$(git describe --tags --always --dirty)" --man bin/stardust.1 --out dist
//
// It prints the path of the package it wrote: dist/stardust_<version>_<arch>.deb,
// where <version> is the Debian form of --version (see debianVersion).
package main

import (
	"bytes"
	"compress/gzip"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
)

// The maintainer scripts, shipped as they are.
//
//go:embed debian/postinst debian/prerm debian/postrm
var scripts embed.FS

// configs are the configurations the package installs in /etc/stardust,
// from conf/: the one the service runs with first.
var configs = []string{"stardust.toml", "stardust-fcgi.toml", "stardust-redis.toml"}

// Package describes the package: what goes in and where.
type Package struct {
	Root       string    // repository root: conf/, LICENSE and README.md
	Binary     string    // the stardust binary for Arch
	Man        string    // stardust(1) in roff, from `stardust --man`
	Arch       string    // Debian (and Go) architecture: amd64, arm64
	Version    string    // as `git describe` says it; see debianVersion
	Maintainer string    // "Name <address>"
	ModCache   string    // GOMODCACHE, for the licenses of the modules in the binary
	GoRoot     string    // GOROOT, for the license of the standard library
	Date       time.Time // of every file and of the changelog entry
}

func main() {
	var p Package
	out := flag.String("out", "dist", "`directory` to write the package to")
	flag.StringVar(&p.Root, "root", ".", "repository root `directory`")
	flag.StringVar(&p.Binary, "binary", "", "stardust binary `file` for --arch")
	flag.StringVar(&p.Man, "man", "", "manual page `file` written by stardust --man")
	flag.StringVar(&p.Arch, "arch", "", "architecture: amd64 or arm64")
	flag.StringVar(&p.Version, "version", "", "version as git describe prints it, e.g. v1.2.0 or v1.2.0-3-gabc1234")
	flag.StringVar(&p.Maintainer, "maintainer", "Stardust for Go maintainers <maintainers@users.noreply.r-seed-568dd7a4.example>", "package maintainer `\"name <address>\"`")
	flag.StringVar(&p.ModCache, "modcache", os.Getenv("GOMODCACHE"), "Go module cache `directory` (go env GOMODCACHE)")
	flag.StringVar(&p.GoRoot, "goroot", os.Getenv("GOROOT"), "Go installation `directory` (go env GOROOT)")
	flag.Parse()
	p.Date = sourceDate()
	path, err := p.Build(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stardust-pkg:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}

// sourceDate is $SOURCE_DATE_EPOCH, so that the same commit builds the same
// package; the Makefile sets it to the commit's date. Now without it.
func sourceDate() time.Time {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.Unix(n, 0).UTC()
		}
	}
	return time.Now().UTC().Truncate(time.Second)
}

// Build writes the package into dir and returns its path.
func (p *Package) Build(dir string) (string, error) {
	for name, v := range map[string]string{"--binary": p.Binary, "--man": p.Man, "--arch": p.Arch, "--version": p.Version, "--modcache": p.ModCache, "--goroot": p.GoRoot} {
		if v == "" {
			return "", fmt.Errorf("%s is required", name)
		}
	}
	version, err := debianVersion(p.Version)
	if err != nil {
		return "", err
	}
	stage, err := os.MkdirTemp("", "stardust-pkg-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(stage)
	contents, err := p.contents(stage, version)
	if err != nil {
		return "", err
	}
	info := &nfpm.Info{
		Name:          "stardust",
		Arch:          p.Arch,
		Platform:      "linux",
		Version:       version,
		VersionSchema: "none", // debianVersion made it a Debian version already
		Section:       "net",
		Priority:      "optional",
		Maintainer:    p.Maintainer,
		Homepage:      "https://github.com/stardust-go/stardust",
		License:       "Apache-2.0", // the repository's LICENSE; copyrightFile checks its wording
		Description: "COMET server: long polling, Server-Sent Events and Bayeux\n" +
			"Stardust serves channels of JSON messages to web pages and programs:\n" +
			"the Stardust API (publish with a POST, receive by long polling or\n" +
			"Server-Sent Events) and Bayeux 1.0 (cometd), over HTTP or FastCGI,\n" +
			"behind nginx or apache2. The package runs it as a systemd service and\n" +
			"ships site files for nginx and apache2 under /usr/share/stardust.",
		MTime: p.Date,
		Overridables: nfpm.Overridables{
			Depends:  []string{"adduser"},
			Suggests: []string{"nginx | apache2"},
			Contents: contents,
			Scripts: nfpm.Scripts{
				PostInstall: filepath.Join(stage, "postinst"),
				PreRemove:   filepath.Join(stage, "prerm"),
				PostRemove:  filepath.Join(stage, "postrm"),
			},
			// gzip rather than xz: a tenth of the time for a tenth more bytes.
			Deb: nfpm.Deb{Compression: "gzip"},
		},
	}
	if err := nfpm.Validate(info); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, deb.Default.ConventionalFileName(info))
	var buf bytes.Buffer
	if err := deb.Default.Package(nfpm.WithDefaults(info), &buf); err != nil {
		return "", fmt.Errorf("package: %w", err)
	}
	return path, os.WriteFile(path, buf.Bytes(), 0o644)
}

// contents lists the package's files, writing the generated ones (unit,
// manual page, changelog, copyright, maintainer scripts) into stage.
func (p *Package) contents(stage, version string) (files.Contents, error) {
	var c files.Contents
	add := func(src, dst string, mode os.FileMode, typ string) {
		c = append(c, &files.Content{Source: src, Destination: dst, Type: typ,
			FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode, MTime: p.Date}})
	}
	var writeErr error // the first failure of write; checked at the end
	write := func(name string, data []byte) string {
		path := filepath.Join(stage, name)
		if err := os.WriteFile(path, data, 0o644); err != nil && writeErr == nil {
			writeErr = err
		}
		return path
	}

	add(p.Binary, "/usr/bin/stardust", 0o755, "")
	// Every configuration the README tells its users to run with: the
	// service's, the FastCGI and the Redis variants (postinst makes each
	// readable by the stardust group only).
	for _, name := range configs {
		add(filepath.Join(p.Root, "conf", name), "/etc/stardust/"+name, 0o644, files.TypeConfig)
	}

	unit, err := os.ReadFile(filepath.Join(p.Root, "conf", "systemd", "stardust.service"))
	if err != nil {
		return nil, err
	}
	packaged, err := packagedUnit(string(unit))
	if err != nil {
		return nil, fmt.Errorf("conf/systemd/stardust.service: %w", err)
	}
	add(write("stardust.service", []byte(packaged)), "/lib/systemd/system/stardust.service", 0o644, "")

	sites := 0
	for _, server := range []string{"nginx", "apache2"} {
		// By glob, so that a site file added to conf/ is packaged too.
		matches, err := filepath.Glob(filepath.Join(p.Root, "conf", server, "*.conf"))
		if err != nil {
			return nil, err
		}
		sort.Strings(matches)
		for _, m := range matches {
			add(m, "/usr/share/stardust/"+server+"/"+filepath.Base(m), 0o644, "")
			sites++
		}
	}
	if sites < 6 {
		return nil, fmt.Errorf("found %d site files in conf/nginx and conf/apache2, want at least the six set-ups", sites)
	}

	readme, err := os.ReadFile(filepath.Join(p.Root, "README.md"))
	if err != nil {
		return nil, err
	}
	add(write("README.md.gz", gzipped(readme)), "/usr/share/doc/stardust/README.md.gz", 0o644, "")
	// The README links its pages under docs/; they go beside it, as text
	// (the screenshots are for the repository's web view).
	pages, err := filepath.Glob(filepath.Join(p.Root, "docs", "*.md"))
	if err != nil {
		return nil, err
	}
	if len(pages) == 0 {
		return nil, fmt.Errorf("no docs/*.md under %s", p.Root)
	}
	if err := os.MkdirAll(filepath.Join(stage, "docs"), 0o755); err != nil {
		return nil, err
	}
	for _, page := range pages {
		text, err := os.ReadFile(page)
		if err != nil {
			return nil, err
		}
		name := filepath.Base(page) + ".gz"
		add(write(filepath.Join("docs", name), gzipped(text)), "/usr/share/doc/stardust/docs/"+name, 0o644, "")
	}

	man, err := os.ReadFile(p.Man)
	if err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(man, []byte(".TH STARDUST 1 ")) {
		return nil, fmt.Errorf("%s is not the output of stardust --man", p.Man)
	}
	add(write("stardust.1.gz", gzipped(man)), "/usr/share/man/man1/stardust.1.gz", 0o644, "")

	// A native package (its version has no Debian revision): changelog.gz.
	add(write("changelog.gz", gzipped([]byte(changelog(version, p.Version, p.Maintainer, p.Date)))),
		"/usr/share/doc/stardust/changelog.gz", 0o644, "")
	add(write("lintian-overrides", []byte(lintianOverrides)), "/usr/share/lintian/overrides/stardust", 0o644, "")

	license, err := os.ReadFile(filepath.Join(p.Root, "LICENSE"))
	if err != nil {
		return nil, err
	}
	copyright, err := copyrightFile(p.Binary, p.ModCache, p.GoRoot, string(license), p.Date)
	if err != nil {
		return nil, err
	}
	add(write("copyright", []byte(copyright)), "/usr/share/doc/stardust/copyright", 0o644, "")

	for _, name := range []string{"postinst", "prerm", "postrm"} {
		b, err := scripts.ReadFile("debian/" + name)
		if err != nil {
			return nil, err
		}
		write(name, b)
	}
	return c, writeErr
}

// packagedUnit is conf/systemd/stardust.service as the package installs it:
// the binary in /usr/bin, and the stardust user that the package makes instead
// of a dynamic one, because the configuration is readable by its group only.
// The header's install-by-hand steps are replaced. Each change must apply: a
// unit that drifted from what is rewritten here is an error.
func packagedUnit(unit string) (string, error) {
	const header = `# systemd unit of the stardust package. Change it with
# "systemctl edit stardust" (or put STARDUST_CONFIG=/etc/stardust/other.toml
# in /etc/default/stardust) rather than here: an upgrade replaces this file.
# Logs go to the journal: journalctl -u stardust.
`
	start := strings.Index(unit, "\n[Unit]")
	if start < 0 {
		return "", errors.New("no [Unit] section")
	}
	unit = header + unit[start:]
	if !strings.Contains(unit, "/usr/local/bin/stardust ") {
		return "", errors.New("no /usr/local/bin/stardust command to point at /usr/bin/stardust")
	}
	unit = strings.ReplaceAll(unit, "/usr/local/bin/stardust ", "/usr/bin/stardust ")
	lines := strings.Split(unit, "\n")
	for i, l := range lines {
		if l != "DynamicUser=yes" {
			continue
		}
		first := i // the comment above the line goes with it
		for first > 0 && strings.HasPrefix(lines[first-1], "#") {
			first--
		}
		user := []string{
			"# The stardust system user and group, made by the package: the",
			"# configuration is readable by that group only, as it may hold secrets.",
			"User=stardust",
			"Group=stardust",
			"# Hardening that a dynamic user would have implied.",
			"RemoveIPC=yes",
			"RestrictSUIDSGID=yes",
		}
		lines = append(lines[:first], append(user, lines[i+1:]...)...)
		return strings.Join(lines, "\n"), nil
	}
	return "", errors.New("no DynamicUser=yes line to replace with the stardust user")
}

// lintianOverrides silences what lintian reports but is right for this
// package, each with the reason.
const lintianOverrides = `# Go links its programs statically (CGO_ENABLED=0: no libc, one file that runs
# on any Debian release). lintian exempts Go programs only when a source
# package build-depends on golang-go; this package is built from the Go module
# itself, without a Debian source package.
stardust: statically-linked-binary [usr/bin/stardust]
`

// changelog is the package's one-entry Debian changelog.
func changelog(version, describe, maintainer string, date time.Time) string {
	return fmt.Sprintf("stardust (%s) unstable; urgency=medium\n\n  * Built from %s.\n\n -- %s  %s\n",
		version, describe, maintainer, date.Format(time.RFC1123Z))
}

// gzipped compresses as Debian wants documentation and manual pages: at the
// highest level, with no file name or time in the header.
func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = io.Copy(zw, bytes.NewReader(b))
	_ = zw.Close()
	return buf.Bytes()
}
