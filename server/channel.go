package server

import (
	"fmt"
	"strings"
	"sync"
)

// Channel names follow Bayeux 1.0: "/" then segments of letters, digits and
// the marks - _ ! ~ ( ) $ @ (plus "." for dotted names people use); the last
// segment of a subscription pattern may be "*" (one level) or "**" (any depth).

func isSegmentByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-_!~()$@.", c) >= 0
}

// ParseChannel checks a channel name or subscription pattern and returns its
// segments. Wildcards are accepted only when pattern is true, and only as the
// last segment.
func ParseChannel(name string, pattern bool) ([]string, error) {
	if len(name) < 2 || name[0] != '/' {
		return nil, fmt.Errorf("%w: %q must start with / and name a segment", ErrBadChannel, name)
	}
	if len(name) > 512 {
		return nil, fmt.Errorf("%w: longer than 512 bytes", ErrBadChannel)
	}
	segs := strings.Split(name[1:], "/")
	for i, s := range segs {
		if s == "" {
			return nil, fmt.Errorf("%w: %q has an empty segment", ErrBadChannel, name)
		}
		if s == "*" || s == "**" {
			if !pattern {
				return nil, fmt.Errorf("%w: %q: wildcards only in subscriptions", ErrBadChannel, name)
			}
			if i != len(segs)-1 {
				return nil, fmt.Errorf("%w: %q: a wildcard must be the last segment", ErrBadChannel, name)
			}
			if i == 0 {
				return nil, fmt.Errorf("%w: %q: a wildcard needs a parent segment", ErrBadChannel, name)
			}
			continue
		}
		for j := 0; j < len(s); j++ {
			if !isSegmentByte(s[j]) {
				return nil, fmt.Errorf("%w: %q: character %q not allowed", ErrBadChannel, name, s[j])
			}
		}
	}
	return segs, nil
}

// IsMeta reports whether name is under /meta/, never delivered to clients.
func IsMeta(name string) bool { return name == "/meta" || strings.HasPrefix(name, "/meta/") }

// IsService reports whether name is under /service/, request/response only.
func IsService(name string) bool { return name == "/service" || strings.HasPrefix(name, "/service/") }

// IsWild reports whether a pattern ends in a wildcard segment.
func IsWild(name string) bool { return strings.HasSuffix(name, "/*") || strings.HasSuffix(name, "/**") }

// subTree holds subscriptions as a token tree, so that matching a channel
// costs one walk down its segments however many wildcard patterns exist
// (the shape of nats-server's sublist). Safe for concurrent use.
type subTree[T comparable] struct {
	mu   sync.RWMutex
	root *subNode[T]
	n    int
}

type subNode[T comparable] struct {
	next  map[string]*subNode[T]
	exact map[T]struct{}
	one   map[T]struct{} // "*" below this node
	any   map[T]struct{} // "**" below this node
}

func newSubTree[T comparable]() *subTree[T] { return &subTree[T]{root: &subNode[T]{}} }

func (n *subNode[T]) empty() bool {
	return len(n.next) == 0 && len(n.exact) == 0 && len(n.one) == 0 && len(n.any) == 0
}

// add subscribes c to the pattern segs; it reports false if already there.
func (t *subTree[T]) add(segs []string, c T) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.root
	last := len(segs) - 1
	for _, s := range segs[:last] {
		child := n.next[s]
		if child == nil {
			if n.next == nil {
				n.next = map[string]*subNode[T]{}
			}
			child = &subNode[T]{}
			n.next[s] = child
		}
		n = child
	}
	set := &n.one
	switch segs[last] {
	case "*":
	case "**":
		set = &n.any
	default:
		child := n.next[segs[last]]
		if child == nil {
			if n.next == nil {
				n.next = map[string]*subNode[T]{}
			}
			child = &subNode[T]{}
			n.next[segs[last]] = child
		}
		set = &child.exact
	}
	if *set == nil {
		*set = map[T]struct{}{}
	}
	if _, ok := (*set)[c]; ok {
		return false
	}
	(*set)[c] = struct{}{}
	t.n++
	return true
}

// remove unsubscribes c from the pattern segs and prunes empty nodes; it
// reports false if c was not subscribed.
func (t *subTree[T]) remove(segs []string, c T) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.removeLocked(segs, c)
}

// removeAll unsubscribes c from every pattern of subs (pattern: its
// segments) under one lock: a match finds c with all of them or none.
func (t *subTree[T]) removeAll(subs map[string][]string, c T) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, segs := range subs {
		t.removeLocked(segs, c)
	}
}

// removeLocked is remove with t.mu held.
func (t *subTree[T]) removeLocked(segs []string, c T) bool {
	path := []*subNode[T]{t.root}
	n := t.root
	last := len(segs) - 1
	for _, s := range segs[:last] {
		if n = n.next[s]; n == nil {
			return false
		}
		path = append(path, n)
	}
	var set map[T]struct{}
	switch segs[last] {
	case "*":
		set = n.one
	case "**":
		set = n.any
	default:
		if n = n.next[segs[last]]; n == nil {
			return false
		}
		path = append(path, n)
		set = n.exact
	}
	if _, ok := set[c]; !ok {
		return false
	}
	delete(set, c)
	t.n--
	// Prune from the leaf up so that a swept channel leaves no node behind.
	for i := len(path) - 1; i > 0; i-- {
		if !path[i].empty() {
			break
		}
		delete(path[i-1].next, segs[i-1])
	}
	return true
}

// match appends to buf every client whose pattern matches the channel segs,
// each client once, and returns the extended slice.
func (t *subTree[T]) match(segs []string, buf []T) []T {
	t.mu.RLock()
	defer t.mu.RUnlock()
	start := len(buf)
	sources := 0
	n := t.root
	for i, s := range segs {
		if len(n.any) > 0 {
			buf = appendSet(buf, n.any)
			sources++
		}
		if i == len(segs)-1 && len(n.one) > 0 {
			buf = appendSet(buf, n.one)
			sources++
		}
		if n = n.next[s]; n == nil {
			break
		}
	}
	if n != nil && len(n.exact) > 0 {
		buf = appendSet(buf, n.exact)
		sources++
	}
	if sources > 1 {
		buf = dedupe(buf, start)
	}
	return buf
}

// exact returns the clients subscribed to exactly this channel name.
func (t *subTree[T]) exact(segs []string) []T {
	t.mu.RLock()
	defer t.mu.RUnlock()
	n := t.root
	for _, s := range segs {
		if n = n.next[s]; n == nil {
			return nil
		}
	}
	return appendSet(nil, n.exact)
}

func appendSet[T comparable](buf []T, set map[T]struct{}) []T {
	for c := range set {
		buf = append(buf, c)
	}
	return buf
}

func dedupe[T comparable](buf []T, start int) []T {
	seen := make(map[T]struct{}, len(buf)-start)
	out := buf[:start]
	for _, c := range buf[start:] {
		if _, ok := seen[c]; !ok {
			seen[c] = struct{}{}
			out = append(out, c)
		}
	}
	return out
}
