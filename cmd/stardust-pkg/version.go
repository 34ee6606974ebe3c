package main

import (
	"fmt"
	"regexp"
	"strings"
)

// describeVersion matches `git describe --tags --always --dirty` after a tag:
// v1.2.0, v1.2.0-rc1, v1.2.0-3-gabc1234, v1.2.0-rc1-3-gabc1234.
var describeVersion = regexp.MustCompile(`^v?([0-9]+(?:\.[0-9]+)*)(?:-([0-9A-Za-z.]*[A-Za-z][0-9A-Za-z.]*))?(?:-([0-9]+)-g([0-9a-f]+))?$`)

// bareCommit is what git describe prints when no tag comes before the commit.
var bareCommit = regexp.MustCompile(`^[0-9a-f]{4,40}$`)

// debianVersion turns what `git describe --tags --always --dirty` prints into
// a Debian version that sorts the same way:
//
//	v1.2.0                -> 1.2.0
//	v1.2.0-rc1            -> 1.2.0~rc1            (before 1.2.0)
//	v1.2.0-3-gabc1234     -> 1.2.0+3.gabc1234     (after 1.2.0, before 1.2.1)
//	abc1234 (no tag yet)  -> 0.0.0~git.abc1234    (before any release)
//	v1.2.0-dirty          -> 1.2.0+0.dirty        (after 1.2.0, before 1.2.0+1...)
//	others -dirty         -> ....dirty or ...+dirty
func debianVersion(describe string) (string, error) {
	v, dirty := strings.CutSuffix(describe, "-dirty")
	var out string
	switch m := describeVersion.FindStringSubmatch(v); {
	case m != nil:
		out = m[1]
		if m[2] != "" {
			out += "~" + m[2]
		}
		if m[3] != "" {
			out += "+" + m[3] + ".g" + m[4]
		}
	case bareCommit.MatchString(v):
		out = "0.0.0~git." + v
	default:
		return "", fmt.Errorf("version %q: want a tag such as v1.2.0 or what git describe --tags --always --dirty prints (set VERSION=v1.2.0 outside a git checkout)", describe)
	}
	switch {
	case !dirty:
	case strings.Contains(out, "+"):
		out += ".dirty"
	case strings.Contains(out, "~git."):
		out += "+dirty"
	default: // on a tag: as 0 commits after it, before the next commit's +1
		out += "+0.dirty"
	}
	return out, nil
}
