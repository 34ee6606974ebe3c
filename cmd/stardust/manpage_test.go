package main

import (
	"errors"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestManPageListsEveryFlag takes the flags from --help, which prints the
// flag set ParseFlags parses, and expects each in --man's OPTIONS section:
// a flag added to the program shows up in the manual without anyone writing it.
func TestManPageListsEveryFlag(t *testing.T) {
	m, out := newTestMain()
	if err := m.ParseFlags([]string{"--help"}); err == nil {
		t.Fatal("--help: want flag.ErrHelp")
	}
	flags := regexp.MustCompile(`(?m)^  -([\w-]+)`).FindAllStringSubmatch(out.String(), -1)
	if len(flags) < 15 {
		t.Fatalf("found only %d flags in --help:\n%s", len(flags), out)
	}
	m, out = newTestMain()
	if err := m.ParseFlags([]string{"--man"}); !errors.Is(err, errDone) {
		t.Fatalf("--man: %v", err)
	}
	page := out.String()
	options, _, ok := strings.Cut(page[strings.Index(page, ".SH OPTIONS"):], "\n.SH FILES")
	if !ok || !strings.HasPrefix(page, ".TH STARDUST 1 ") {
		t.Fatalf("not a manual page with OPTIONS then FILES:\n%s", page)
	}
	for _, f := range flags {
		name := f[1]
		want := `\fB\-\-` + strings.ReplaceAll(name, "-", `\-`) + `\fR`
		if len(name) == 1 {
			want = `\fB\-` + name + `\fR`
		}
		if !strings.Contains(options, want) {
			t.Errorf("flag -%s is not in the manual's OPTIONS (want %q)", name, want)
		}
	}
	for _, s := range []string{`\fB\-c\fR, \fB\-\-config\fR \fIfile\fR`, `\fB\-\-check\fR` + "\ncheck the configuration"} {
		if !strings.Contains(options, s) {
			t.Errorf("manual lacks %q", s)
		}
	}
}

// TestManPageFormats has man(1) format the page with warnings on, when man is
// installed: a roff mistake shows up here rather than in lintian.
func TestManPageFormats(t *testing.T) {
	if _, err := exec.LookPath("man"); err != nil {
		t.Skip("man not installed (Debian package man-db); the page's text is checked by TestManPageListsEveryFlag")
	}
	m, out := newTestMain()
	if err := m.ParseFlags([]string{"--man"}); !errors.Is(err, errDone) {
		t.Fatalf("--man: %v", err)
	}
	cmd := exec.Command("man", "--warnings", "-E", "UTF-8", "-l", "-")
	cmd.Stdin = strings.NewReader(out.String())
	cmd.Env = append(cmd.Environ(), "MANWIDTH=80", "PAGER=cat", "MANPAGER=cat")
	text, err := cmd.Output()
	var stderr string
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = string(ee.Stderr)
	}
	if err != nil || stderr != "" {
		t.Fatalf("man --warnings: %v\n%s", err, stderr)
	}
	// man overstrikes bold and underlined letters for the terminal.
	plain := regexp.MustCompile(".\x08").ReplaceAllString(string(text), "")
	if !strings.Contains(plain, "--document-root dir") {
		t.Errorf("formatted page lacks the line for --document-root:\n%s", text)
	}
}

func TestRoffText(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"long-poll hold", "long-poll hold"},
		{"see --check or -c", `see \-\-check or \-c`},
		{`a\b`, `a\eb`},
		{".TH at the start\n'quote", `\&.TH at the start` + "\n" + `\&'quote`},
	} {
		if got := roffText(c.in); got != c.want {
			t.Errorf("roffText(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
