// Package proxycheck reads the effective configuration of the nginx or
// apache2 in front of Stardust (the output of nginx -T, the files that
// apache2ctl -t -D DUMP_INCLUDES lists) and works out how many held clients
// (long polls, SSE streams, WebSockets) it can carry and what to change.
// It parses text and computes; running the web server's programs is the
// caller's business (cmd/stardust --check-proxy).
package proxycheck

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrSyntax is wrapped by every error about configuration text that cannot
// be read.
var ErrSyntax = errors.New("proxycheck: syntax error")

// NginxConfig is what an nginx configuration says about held clients. Zero
// values mean "not set": nginx's compiled-in defaults apply.
type NginxConfig struct {
	WorkerProcesses    string // "auto" or a number
	WorkerConnections  int    // per worker, both sides of a proxied request
	WorkerRlimitNofile int    // open files per worker, set by nginx itself
	MultiAccept        bool
	PidFile            string   // the pid directive
	Files              []string // configuration files in the dump, in order
}

// Defaults of nginx when a directive is absent.
const (
	NginxDefaultWorkerConnections = 512
	NginxDefaultPidFile           = "/run/nginx.pid"
)

// nginxFileMarker starts each file in the output of nginx -T.
const nginxFileMarker = "# configuration file "

// ParseNginx reads the output of nginx -T: every configuration file, each
// after a "# configuration file NAME:" line. Directives of the main context
// and of events {} count wherever they are; nginx -t has already refused
// them anywhere else. A dump without file markers is read as one file.
func ParseNginx(dump string) (*NginxConfig, error) {
	c := &NginxConfig{}
	name := "(input)"
	var text strings.Builder
	flush := func() error {
		err := c.parseFile(name, text.String())
		text.Reset()
		return err
	}
	for _, line := range strings.SplitAfter(dump, "\n") {
		if rest, ok := strings.CutPrefix(line, nginxFileMarker); ok {
			if err := flush(); err != nil {
				return nil, err
			}
			name = strings.TrimSuffix(strings.TrimRight(rest, "\r\n"), ":")
			c.Files = append(c.Files, name)
			continue
		}
		text.WriteString(line)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return c, nil
}

// parseFile reads the directives of one file.
func (c *NginxConfig) parseFile(name, text string) error {
	toks, err := nginxTokens(text)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrSyntax, name, err)
	}
	var blocks []string // names of the enclosing blocks
	var words []token
	for _, tk := range toks {
		switch {
		case tk.text == "{" && !tk.quoted:
			if len(words) == 0 {
				return fmt.Errorf("%w: %s line %d: block without a name", ErrSyntax, name, tk.line)
			}
			blocks = append(blocks, words[0].text)
			words = words[:0]
		case tk.text == "}" && !tk.quoted:
			if len(words) > 0 {
				return fmt.Errorf("%w: %s line %d: %q without ';'", ErrSyntax, name, tk.line, words[0].text)
			}
			if len(blocks) == 0 {
				return fmt.Errorf("%w: %s line %d: unexpected '}'", ErrSyntax, name, tk.line)
			}
			blocks = blocks[:len(blocks)-1]
		case tk.text == ";" && !tk.quoted:
			if len(words) == 0 {
				continue // nginx allows an empty statement
			}
			if err := c.directive(blocks, words); err != nil {
				return fmt.Errorf("%w: %s line %d: %v", ErrSyntax, name, words[0].line, err)
			}
			words = words[:0]
		default:
			words = append(words, tk)
		}
	}
	if len(words) > 0 {
		return fmt.Errorf("%w: %s: %q without ';' at the end", ErrSyntax, name, words[0].text)
	}
	if len(blocks) > 0 {
		return fmt.Errorf("%w: %s: block %q not closed", ErrSyntax, name, blocks[len(blocks)-1])
	}
	return nil
}

func (c *NginxConfig) directive(blocks []string, words []token) error {
	name, args := words[0].text, words[1:]
	inEvents := len(blocks) == 1 && blocks[0] == "events"
	if len(blocks) != 0 && !inEvents {
		return nil
	}
	one := func() (string, error) {
		if len(args) != 1 {
			return "", fmt.Errorf("%s: want one value, got %d", name, len(args))
		}
		return args[0].text, nil
	}
	number := func() (int, error) {
		v, err := one()
		if err != nil {
			return 0, err
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%s: want a number, got %q", name, v)
		}
		return n, nil
	}
	var err error
	switch {
	case inEvents && name == "worker_connections":
		c.WorkerConnections, err = number()
	case inEvents && name == "multi_accept":
		var v string
		if v, err = one(); err == nil {
			c.MultiAccept = v == "on"
		}
	case !inEvents && name == "worker_processes":
		var v string
		if v, err = one(); err == nil {
			if _, e := strconv.Atoi(v); e != nil && v != "auto" {
				err = fmt.Errorf("worker_processes: want a number or auto, got %q", v)
			}
			c.WorkerProcesses = v
		}
	case !inEvents && name == "worker_rlimit_nofile":
		c.WorkerRlimitNofile, err = number()
	case !inEvents && name == "pid":
		c.PidFile, err = one()
	}
	return err
}

// token is a word of an nginx configuration, or one of { } ; unquoted.
type token struct {
	text   string
	quoted bool
	line   int
}

// nginxTokens splits nginx configuration text into words, quoted strings
// and the punctuation { } ;, dropping comments.
func nginxTokens(text string) ([]token, error) {
	var toks []token
	line := 1
	for i := 0; i < len(text); {
		ch := text[i]
		switch {
		case ch == '\n':
			line++
			i++
		case ch == ' ' || ch == '\t' || ch == '\r':
			i++
		case ch == '#':
			for i < len(text) && text[i] != '\n' {
				i++
			}
		case ch == '{' || ch == '}' || ch == ';':
			toks = append(toks, token{text: string(ch), line: line})
			i++
		case ch == '"' || ch == '\'':
			start := line
			var b strings.Builder
			i++
			for {
				if i >= len(text) {
					return nil, fmt.Errorf("line %d: quoted string not closed", start)
				}
				c := text[i]
				if c == '\\' && i+1 < len(text) {
					b.WriteByte(text[i+1])
					if text[i+1] == '\n' {
						line++
					}
					i += 2
					continue
				}
				i++
				if c == ch {
					break
				}
				if c == '\n' {
					line++
				}
				b.WriteByte(c)
			}
			toks = append(toks, token{text: b.String(), quoted: true, line: start})
		default:
			start := i
			for i < len(text) && !strings.ContainsRune(" \t\r\n{};\"'", rune(text[i])) {
				if text[i] == '\\' && i+1 < len(text) {
					i++
				}
				i++
			}
			i = min(i, len(text))
			toks = append(toks, token{text: text[start:i], line: line})
		}
	}
	return toks, nil
}
