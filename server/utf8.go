package server

import (
	"bytes"
	"fmt"
	"unicode/utf8"
)

// One rule for text in both protocols: what a client sends must be valid
// UTF-8, checked where the request is decoded (a Stardust m, a JSON body, a
// Bayeux body, form field or WebSocket frame), and refused with 400 naming
// the byte where it goes wrong. So nothing stored or sent back can make a
// strict JSON parser reject a whole answer.

// checkUTF8 returns an error wrapping ErrBadMessage, with the offset of the
// first bad byte, when b is not valid UTF-8.
func checkUTF8(b []byte, what string) error {
	if utf8.Valid(b) {
		return nil
	}
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return fmt.Errorf("%w: invalid UTF-8 in %s at byte %d", ErrBadMessage, what, i)
		}
		i += n
	}
	return nil
}

var (
	rawLS = []byte("\u2028")
	rawPS = []byte("\u2029")
)

// escapeLineSeparators writes U+2028 and U+2029 as \u escapes: valid in
// JSON strings, they end a line in older JavaScript engines, so a JSONP
// answer carrying them raw would not parse as a script.
func escapeLineSeparators(js []byte) []byte {
	if !bytes.Contains(js, rawLS) && !bytes.Contains(js, rawPS) {
		return js
	}
	js = bytes.ReplaceAll(js, rawLS, []byte(`\u2028`))
	return bytes.ReplaceAll(js, rawPS, []byte(`\u2029`))
}
