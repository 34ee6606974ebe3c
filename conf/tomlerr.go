package conf

import (
	"fmt"
	"regexp"
	"strings"
)

// tomlTypeError is the TOML decoder's "incompatible types" message (a
// value of the wrong type for its key), which names Go's types:
//
//	toml: line 4 (last key "comet.history_size"): incompatible types: TOML value has type string; destination has type integer
var tomlTypeError = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "([^"]+)"\): incompatible types: TOML value has type (.+); destination has type (.+)$`)

// typeWords say a TOML value's type in the configuration's words, by the
// decoder's names of the Go type it read and the Go type it wanted.
var typeWords = map[string]string{
	"string": "a string", "int64": "an integer", "integer": "an integer", "float64": "a float", "float": "a float",
	"bool": "true or false", "boolean": "true or false", "[]any": "an array", "slice": "an array",
	"map[string]any": "a table", "map": "a table", "primitive (string-like)": "a string",
}

// typeError rewrites a type error to name the key and the type it wants,
// in TOML's words ("comet.history_size (line 4): want an integer, got a
// string"); ok is false for any other error.
func typeError(err error) (msg string, ok bool) {
	m := tomlTypeError.FindStringSubmatch(err.Error())
	if m == nil {
		return "", false
	}
	word := func(t string) string {
		if w, ok := typeWords[t]; ok {
			return w
		}
		if strings.HasPrefix(t, "[]") {
			return "an array"
		}
		return t
	}
	where := m[2]
	if m[1] != "" {
		where += " (line " + m[1] + ")"
	}
	return fmt.Sprintf("%s: want %s, got %s", where, word(m[4]), word(m[3])), true
}
