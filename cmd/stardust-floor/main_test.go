package main

import (
	"io"
	"strings"
	"testing"
)

func TestRefusesNonLoopback(t *testing.T) {
	for _, args := range [][]string{
		{"--listen", "0.0.0.0:0"},
		{"--listen", "192.0.2.1:80"},
		{"--listen", "localhost"},
		{"--timeout", "0s"},
		{"extra"},
	} {
		if err := run(args, io.Discard, io.Discard); err == nil {
			t.Errorf("run(%q) accepted", args)
		} else if strings.Contains(strings.Join(args, " "), "0.0.0.0") && !strings.Contains(err.Error(), "loopback") {
			t.Errorf("run(%q): %v, want it to say loopback", args, err)
		}
	}
}
