package server

import (
	"errors"
	"testing"
)

func TestChainACL(t *testing.T) {
	if ChainACL() != nil || ChainACL(nil, nil) != nil {
		t.Fatal("a chain of no hooks is not nil: every message would pay a call for nothing")
	}
	var calls []string
	hook := func(name string, err error) MessageACL {
		return func(*Client, *BayeuxMessage) error {
			calls = append(calls, name)
			return err
		}
	}
	no := errors.New("no")
	m := &BayeuxMessage{Channel: "/x"}
	if err := ChainACL(nil, hook("a", nil), nil)(nil, m); err != nil || len(calls) != 1 {
		t.Fatalf("one hook: %v, calls %v", err, calls)
	}
	calls = nil
	if err := ChainACL(hook("a", nil), hook("b", no), hook("c", nil))(nil, m); err != no ||
		len(calls) != 2 || calls[1] != "b" {
		t.Fatalf("chain: %v, calls %v; want the error of b, c not called", err, calls)
	}
}
