package proxycheck

import (
	"fmt"
	"strconv"
	"strings"
)

// ApacheConfig is what an apache2 configuration says about held clients.
// Zero values mean "not set": the MPM's compiled-in defaults apply.
type ApacheConfig struct {
	MPM                      string // "event", "worker" or "prefork", from the loaded modules
	ServerLimit              int
	ThreadLimit              int
	ThreadsPerChild          int
	MaxRequestWorkers        int      // also read from its old name MaxClients
	AsyncRequestWorkerFactor float64  // event only
	ProxyPasses              []string // ProxyPass lines, as written, for the report
	Files                    []string // configuration files read, in order
}

// ApacheFile is one configuration file: its name and its text.
type ApacheFile struct {
	Name, Text string
}

// ParseApacheIncludes reads the output of apache2ctl -t -D DUMP_INCLUDES:
// the configuration files in the order apache2 reads them.
func ParseApacheIncludes(out string) []string {
	var files []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && strings.HasPrefix(f[0], "(") && strings.HasSuffix(f[0], ")") && strings.HasPrefix(f[1], "/") {
			files = append(files, f[1])
		}
	}
	return files
}

// ParseApacheModules reads the output of apache2ctl -M: the names of the
// loaded modules, such as "mpm_event_module".
func ParseApacheModules(out string) []string {
	var mods []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && strings.HasSuffix(f[0], "_module") && strings.HasPrefix(f[1], "(") {
			mods = append(mods, f[0])
		}
	}
	return mods
}

// ParseApache reads the MPM and proxy settings of the files, in order (a
// later setting wins, as in apache2), given the loaded modules: sections
// <IfModule> of modules not loaded are skipped, other sections are read.
func ParseApache(files []ApacheFile, modules []string) (*ApacheConfig, error) {
	loaded := map[string]bool{}
	c := &ApacheConfig{}
	for _, m := range modules {
		loaded[m] = true
		if mpm, ok := strings.CutPrefix(m, "mpm_"); ok {
			c.MPM = strings.TrimSuffix(mpm, "_module")
		}
	}
	for _, f := range files {
		c.Files = append(c.Files, f.Name)
		if err := c.parseFile(f, loaded); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// apacheSectionLimit bounds the nesting of sections, against hostile input.
const apacheSectionLimit = 100

func (c *ApacheConfig) parseFile(f ApacheFile, loaded map[string]bool) error {
	type section struct {
		name   string
		active bool
	}
	var stack []section
	active := func() bool { return len(stack) == 0 || stack[len(stack)-1].active }
	lines := strings.Split(f.Text, "\n")
	for i := 0; i < len(lines); i++ {
		lineNo := i + 1
		line := strings.TrimSpace(lines[i])
		// A backslash at the end continues the directive on the next line.
		for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
			i++
			line = strings.TrimSpace(strings.TrimSuffix(line, "\\") + " " + strings.TrimSpace(lines[i]))
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "</") {
			name := strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(line, "</"), ">"))
			if len(stack) == 0 || stack[len(stack)-1].name != name {
				return fmt.Errorf("%w: %s line %d: %s closes no open section", ErrSyntax, f.Name, lineNo, line)
			}
			stack = stack[:len(stack)-1]
			continue
		}
		if strings.HasPrefix(line, "<") {
			if !strings.HasSuffix(line, ">") {
				return fmt.Errorf("%w: %s line %d: section %s without '>'", ErrSyntax, f.Name, lineNo, line)
			}
			if len(stack) >= apacheSectionLimit {
				return fmt.Errorf("%w: %s line %d: sections nested too deep", ErrSyntax, f.Name, lineNo)
			}
			fields := strings.Fields(strings.TrimSuffix(line[1:], ">"))
			if len(fields) == 0 {
				return fmt.Errorf("%w: %s line %d: empty section", ErrSyntax, f.Name, lineNo)
			}
			name := strings.ToLower(fields[0])
			on := active()
			if name == "ifmodule" && len(fields) == 2 {
				on = on && ifModule(fields[1], loaded)
			}
			stack = append(stack, section{name, on})
			continue
		}
		if !active() {
			continue
		}
		if err := c.directive(strings.Fields(line)); err != nil {
			return fmt.Errorf("%w: %s line %d: %v", ErrSyntax, f.Name, lineNo, err)
		}
	}
	if len(stack) > 0 {
		return fmt.Errorf("%w: %s: section <%s> not closed", ErrSyntax, f.Name, stack[len(stack)-1].name)
	}
	return nil
}

// ifModule evaluates the argument of <IfModule>: a module identifier
// (proxy_module) or source file (mod_proxy.c), "!" for not loaded.
func ifModule(arg string, loaded map[string]bool) bool {
	arg = strings.Trim(arg, `"`)
	not := strings.HasPrefix(arg, "!")
	arg = strings.TrimPrefix(arg, "!")
	if src, ok := strings.CutSuffix(arg, ".c"); ok {
		arg = strings.TrimPrefix(src, "mod_") + "_module"
	}
	return loaded[arg] != not
}

func (c *ApacheConfig) directive(words []string) error {
	name := strings.ToLower(words[0])
	number := func() (int, error) {
		if len(words) != 2 {
			return 0, fmt.Errorf("%s: want one value, got %d", words[0], len(words)-1)
		}
		n, err := strconv.Atoi(words[1])
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%s: want a number, got %q", words[0], words[1])
		}
		return n, nil
	}
	var err error
	switch name {
	case "serverlimit":
		c.ServerLimit, err = number()
	case "threadlimit":
		c.ThreadLimit, err = number()
	case "threadsperchild":
		c.ThreadsPerChild, err = number()
	case "maxrequestworkers", "maxclients":
		c.MaxRequestWorkers, err = number()
	case "asyncrequestworkerfactor":
		if len(words) != 2 {
			return fmt.Errorf("%s: want one value", words[0])
		}
		f, e := strconv.ParseFloat(words[1], 64)
		if e != nil || f < 0 || f > 1e6 {
			return fmt.Errorf("%s: want a number, got %q", words[0], words[1])
		}
		c.AsyncRequestWorkerFactor = f
	case "proxypass":
		c.ProxyPasses = append(c.ProxyPasses, strings.Join(words, " "))
	}
	return err
}
