package main

// The manual page stardust(1), written from the flag set that ParseFlags
// parses: `stardust --man` prints it, and the Debian package ships that
// output, so the page lists exactly the flags the program takes.

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// writeManPage writes stardust(1) in roff (man(7) macros) for the flags of fs.
// A flag whose usage is "short for --NAME" is listed with --NAME instead of on
// its own.
func writeManPage(w io.Writer, fs *flag.FlagSet) error {
	short := map[string][]string{} // long name -> its one-letter aliases
	fs.VisitAll(func(f *flag.Flag) {
		if long, ok := strings.CutPrefix(f.Usage, "short for --"); ok && fs.Lookup(long) != nil {
			short[long] = append(short[long], f.Name)
		}
	})
	var b strings.Builder
	fmt.Fprintf(&b, `.TH STARDUST 1 "" "stardust %s" "User Commands"
.SH NAME
stardust \- COMET server: long polling, Server-Sent Events and Bayeux over HTTP or FastCGI
.SH SYNOPSIS
.B stardust
.RI [ flags ]
.SH DESCRIPTION
Stardust serves channels of JSON messages to web pages and programs: the
Stardust API (publish with a POST, receive by long polling or Server-Sent
Events) and Bayeux 1.0 (cometd: long-polling, callback-polling and
WebSocket), over plain HTTP or FastCGI, usually behind nginx or apache2.
.PP
The configuration comes from the built-in defaults, then the TOML file given
with
.BR \-\-config ,
then the other flags: a flag overrides the file, the file overrides the
defaults.
.SH OPTIONS
`, roffText(programVersion()))
	fs.VisitAll(func(f *flag.Flag) {
		if strings.HasPrefix(f.Usage, "short for --") && fs.Lookup(strings.TrimPrefix(f.Usage, "short for --")) != nil {
			return
		}
		arg, usage := flag.UnquoteUsage(f)
		if isBoolFlag(f) {
			arg = ""
		}
		var names []string
		for _, s := range short[f.Name] {
			names = append(names, `\fB`+roffFlag(s)+`\fR`)
		}
		names = append(names, `\fB`+roffFlag(f.Name)+`\fR`)
		line := strings.Join(names, ", ")
		if arg != "" {
			line += ` \fI` + roffText(arg) + `\fR`
		}
		fmt.Fprintf(&b, ".TP\n%s\n%s\n", line, roffText(usage))
	})
	b.WriteString(`.SH FILES
.TP
.I /etc/stardust/stardust.toml
The configuration the packaged service runs, every key at its default with a
comment.
.TP
.I /etc/default/stardust
Read by the systemd unit: set STARDUST_CONFIG to run another file.
.TP
.I /usr/share/stardust/nginx/
.TQ
.I /usr/share/stardust/apache2/
Site files for nginx and apache2 in front of Stardust (static site,
reverse proxy, FastCGI); each one's header says how to enable it.
.SH SIGNALS
On SIGTERM or SIGINT Stardust answers every held long poll at once, closes
WebSockets, stops accepting and exits once the requests in flight are done or
[server] shutdown_timeout has passed.
.SH EXIT STATUS
0 on a clean stop, and after
.BR \-\-check ,
.BR \-\-version ,
.B \-\-man
or
.BR \-\-help ;
1 when serving fails; 2 for a bad flag or configuration, every problem named.
.SH SEE ALSO
.BR nginx (8),
.BR apache2 (8),
.BR systemctl (1),
.BR journalctl (1);
.I /usr/share/doc/stardust/README.md.gz
and the pages under
.IR /usr/share/doc/stardust/docs/ .
`)
	_, err := io.WriteString(w, b.String())
	return err
}

// isBoolFlag says whether a flag takes no argument.
func isBoolFlag(f *flag.Flag) bool {
	bf, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && bf.IsBoolFlag()
}

// roffFlag is how a flag is written on the command line: -c, --config.
func roffFlag(name string) string {
	if len(name) == 1 {
		return `\-` + name
	}
	return `\-\-` + strings.ReplaceAll(name, "-", `\-`)
}

// roffText escapes text for roff: backslashes print as themselves, a dash
// that starts a word (a flag) stays an ASCII minus that can be copied, and a
// line cannot start a request.
func roffText(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	var b strings.Builder
	for i, r := range s {
		if r == '-' && (i == 0 || strings.ContainsRune(" \t\n(-", rune(s[i-1]))) {
			b.WriteString(`\-`)
			continue
		}
		b.WriteRune(r)
	}
	lines := strings.Split(b.String(), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			lines[i] = `\&` + l
		}
	}
	return strings.Join(lines, "\n")
}
