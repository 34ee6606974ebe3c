package main

import (
	"debug/buildinfo"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
	"unicode"
)

// copyrightFile is /usr/share/doc/stardust/copyright in the Debian machine
// readable format: Stardust itself, then each Go module compiled into the
// binary (read from the binary's build information, so the list cannot
// drift from what is linked), with its license text from the module cache.
// license is the text of the repository's LICENSE file: its name (told by
// its wording, so the two cannot disagree) is Stardust's License field.
func copyrightFile(binary, modCache, goRoot, license string, date time.Time) (string, error) {
	own := licenseName(license)
	long, ok := commonLicenses[own]
	if !ok {
		return "", fmt.Errorf("LICENSE is %q, want one of /usr/share/common-licenses (Apache-2.0)", own)
	}
	bi, err := buildinfo.ReadFile(binary)
	if err != nil {
		return "", fmt.Errorf("build information of %s: %w", binary, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: stardust
Source: https://github.com/stardust-go/stardust
Comment: The stardust binary is statically linked: it contains the Go standard
 library and the Go modules listed below, each under its own license.

Files: *
Copyright: %d Stardust for Go maintainers
License: %s
 On Debian systems the full text of %s is in
 /usr/share/common-licenses/%s.
`, date.Year(), own, long, own)

	goLicense, err := os.ReadFile(filepath.Join(goRoot, "LICENSE"))
	if err != nil {
		return "", fmt.Errorf("license of the Go standard library: %w", err)
	}
	writeModule(&b, "Go standard library "+bi.GoVersion, "go/*", string(goLicense), "")

	for _, dep := range bi.Deps {
		m := dep
		if m.Replace != nil {
			m = m.Replace
		}
		text, notice, err := moduleLicense(modCache, m.Path, m.Version)
		if err != nil {
			return "", err
		}
		writeModule(&b, "Go module "+m.Path+" "+m.Version, m.Path+"/*", text, notice)
	}
	return b.String(), nil
}

// commonLicenses are the licenses Debian ships in /usr/share/common-licenses,
// which a copyright file names instead of repeating.
var commonLicenses = map[string]string{
	"Apache-2.0": "the Apache License, Version 2.0",
	"MPL-2.0":    "the Mozilla Public License, Version 2.0",
}

// writeModule adds one Files paragraph with the license text in it, or a
// pointer to the copy every Debian system has.
func writeModule(b *strings.Builder, what, files, text, notice string) {
	name := licenseName(text)
	fmt.Fprintf(b, "\nFiles: %s\nCopyright: %s\nLicense: %s\n", files, copyrightLine(text+"\n"+notice, what), name)
	if long, ok := commonLicenses[name]; ok {
		fmt.Fprintf(b, " On Debian systems the full text of %s is in\n /usr/share/common-licenses/%s.\n", long, name)
	} else {
		b.WriteString(licenseText(text))
	}
	fmt.Fprintf(b, "Comment: %s, compiled into /usr/bin/stardust.\n", what)
}

// moduleLicense reads a module's license file, and its NOTICE file if it
// has one (where Apache-licensed modules name their authors), from the
// module cache.
func moduleLicense(modCache, path, version string) (license, notice string, err error) {
	dir := filepath.Join(modCache, escapeModulePath(path)+"@"+version)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", "", fmt.Errorf("module %s %s not in the module cache (run go mod download): %w", path, version, err)
	}
	for _, e := range entries {
		name := strings.ToUpper(e.Name())
		if e.IsDir() {
			continue
		}
		var into *string
		switch {
		case license == "" && (strings.HasPrefix(name, "LICENSE") || strings.HasPrefix(name, "LICENCE") || strings.HasPrefix(name, "COPYING")):
			into = &license
		case notice == "" && strings.HasPrefix(name, "NOTICE"):
			into = &notice
		default:
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return "", "", err
		}
		*into = string(b)
	}
	if license == "" {
		return "", "", fmt.Errorf("module %s %s has no LICENSE file in %s", path, version, dir)
	}
	return license, notice, nil
}

// escapeModulePath is the module cache's spelling of a path: each capital
// letter as "!" and the small letter.
func escapeModulePath(path string) string {
	var b strings.Builder
	for _, r := range path {
		if unicode.IsUpper(r) {
			b.WriteByte('!')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// licenseName is the short name of the license, in the spelling of the
// Debian copyright format, told by the text's own wording.
func licenseName(text string) string {
	t := strings.Join(strings.Fields(text), " ")
	switch {
	case strings.Contains(t, "Apache License") && strings.Contains(t, "Version 2.0"):
		return "Apache-2.0"
	case strings.Contains(t, "Mozilla Public License") && strings.Contains(t, "2.0"):
		return "MPL-2.0"
	case strings.Contains(t, "Permission is hereby granted, free of charge"):
		return "Expat"
	case strings.Contains(t, "Redistribution and use in source and binary forms") && strings.Contains(t, "Neither the name"):
		return "BSD-3-clause"
	case strings.Contains(t, "Redistribution and use in source and binary forms"):
		return "BSD-2-clause"
	case strings.Contains(t, "Permission to use, copy, modify, and/or distribute this software"):
		return "ISC"
	}
	return "other"
}

var copyrightRE = regexp.MustCompile(`(?im)^\s*copyright\s+(?:\(c\)\s*|©\s*)?([0-9].*)$`)

// copyrightLine is the first copyright statement of a license text, or who
// wrote the module when there is none.
func copyrightLine(text, what string) string {
	if m := copyrightRE.FindStringSubmatch(text); m != nil {
		return strings.TrimSpace(m[1])
	}
	return "the authors of the " + what
}

// licenseText indents a license text as the format wants it: each line after
// a space, an empty line as " .".
func licenseText(text string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(strings.ReplaceAll(text, "\r\n", "\n")), "\n") {
		line = strings.TrimRight(line, " \t")
		if line == "" {
			line = "."
		}
		b.WriteString(" " + line + "\n")
	}
	return b.String()
}
