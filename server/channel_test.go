package server

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
)

func TestParseChannel(t *testing.T) {
	tests := []struct {
		name    string
		pattern bool
		ok      bool
	}{
		{"/foo", false, true},
		{"/foo/bar", false, true},
		{"/a-b_c!~()$@.d/9", false, true},
		{"/stardust/foo", false, true},
		{"", false, false},
		{"/", false, false},
		{"foo", false, false},
		{"/foo/", false, false},
		{"//foo", false, false},
		{"/foo bar", false, false},
		{"/foo/*", false, false},
		{"/foo/*", true, true},
		{"/foo/**", true, true},
		{"/*", true, false},
		{"/**", true, false},
		{"/foo/*/bar", true, false},
		{"/foo/**/bar", true, false},
		{"/foo/*x", true, false},
		{"/foo/***", true, false},
		{"/" + strings.Repeat("a", 600), false, false},
		{"/é", false, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/pattern=%v", tt.name, tt.pattern), func(t *testing.T) {
			_, err := ParseChannel(tt.name, tt.pattern)
			if (err == nil) != tt.ok {
				t.Fatalf("ParseChannel(%q, %v) = %v, want ok=%v", tt.name, tt.pattern, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrBadChannel) {
				t.Errorf("error does not wrap ErrBadChannel: %v", err)
			}
		})
	}
}

func TestSubTreeMatch(t *testing.T) {
	tests := []struct {
		pattern string
		matches []string
		misses  []string
	}{
		{"/a", []string{"/a"}, []string{"/a/b", "/b", "/ab"}},
		{"/a/b", []string{"/a/b"}, []string{"/a", "/a/b/c", "/a/c"}},
		{"/a/*", []string{"/a/b", "/a/c"}, []string{"/a", "/a/b/c", "/b/c"}},
		{"/a/**", []string{"/a/b", "/a/b/c", "/a/b/c/d"}, []string{"/a", "/b/a", "/ab/c"}},
		{"/a/b/*", []string{"/a/b/c"}, []string{"/a/b", "/a/b/c/d", "/a/c/d"}},
		{"/a/b/**", []string{"/a/b/c", "/a/b/c/d"}, []string{"/a/b", "/a/c"}},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			tree := newSubTree[*memSession]()
			c := &memSession{s: Session{ID: "c"}}
			segs, err := ParseChannel(tt.pattern, true)
			if err != nil {
				t.Fatal(err)
			}
			tree.add(segs, c)
			for _, name := range tt.matches {
				got := tree.match(mustSegs(t, name), nil)
				if len(got) != 1 || got[0] != c {
					t.Errorf("%q should match %q", tt.pattern, name)
				}
			}
			for _, name := range tt.misses {
				if got := tree.match(mustSegs(t, name), nil); len(got) != 0 {
					t.Errorf("%q should not match %q", tt.pattern, name)
				}
			}
			if !tree.remove(segs, c) {
				t.Fatal("remove reported no subscription")
			}
			if !tree.root.empty() {
				t.Errorf("tree not pruned after remove: %+v", tree.root)
			}
		})
	}
}

func mustSegs(t *testing.T, name string) []string {
	t.Helper()
	segs, err := ParseChannel(name, false)
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

func TestSubTreeEachClientOnce(t *testing.T) {
	tree := newSubTree[*memSession]()
	a, b := &memSession{s: Session{ID: "a"}}, &memSession{s: Session{ID: "b"}}
	for _, p := range []string{"/x/y", "/x/*", "/x/**"} {
		segs, _ := ParseChannel(p, true)
		tree.add(segs, a)
	}
	segs, _ := ParseChannel("/x/**", true)
	tree.add(segs, b)
	if tree.add(segs, b) {
		t.Error("second add of the same subscription reported new")
	}
	got := tree.match(mustSegs(t, "/x/y"), nil)
	ids := []string{}
	for _, c := range got {
		ids = append(ids, c.s.ID)
	}
	sort.Strings(ids)
	if strings.Join(ids, ",") != "a,b" {
		t.Errorf("got %v, want each of a and b once", ids)
	}
}

func FuzzParseChannel(f *testing.F) {
	for _, s := range []string{"/foo", "/foo/*", "/foo/**", "//", "/a/b/c", "/meta/connect", "/*/x"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, name string, pattern bool) {
		segs, err := ParseChannel(name, pattern)
		if err != nil {
			return
		}
		if "/"+strings.Join(segs, "/") != name {
			t.Fatalf("segments %q do not rebuild %q", segs, name)
		}
		tree := newSubTree[*memSession]()
		c := &memSession{s: Session{ID: "f"}}
		tree.add(segs, c)
		if !pattern || !IsWild(name) {
			if got := tree.match(segs, nil); len(got) != 1 {
				t.Fatalf("%q does not match itself", name)
			}
		}
		tree.remove(segs, c)
		if !tree.root.empty() {
			t.Fatal("tree not empty after remove")
		}
	})
}

func TestParseChannelList(t *testing.T) {
	tests := []struct {
		in   string
		want string // joined with ","; "" means an error
	}{
		{"foo", "foo"},
		{"foo+bar", "foo,bar"},
		{"foo+bar+foo", "foo,bar"},
		{"a_1+B2", "a_1,B2"},
		{"foo bar", "foo,bar"}, // a "+" that a form decoder turned into a space
		{"", ""},
		{"+", ""},
		{"foo+ba-r", ""},
		{"foo/bar", ""},
		{strings.Repeat("a+", 65) + "a", ""},
	}
	for _, tt := range tests {
		got, err := parseChannelList(tt.in)
		if tt.want == "" {
			if err == nil || !errors.Is(err, ErrBadChannel) {
				t.Errorf("parseChannelList(%q) = %v, %v; want ErrBadChannel", tt.in, got, err)
			}
			continue
		}
		if err != nil || strings.Join(got, ",") != tt.want {
			t.Errorf("parseChannelList(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

// FuzzStardustURL fuzzes the parsers of the Stardust URL parts: the channel
// list and ?since=.
func FuzzStardustURL(f *testing.F) {
	f.Add("foo+bar", "1700000000.5")
	f.Add("a", "")
	f.Add("x+x+y", "1e9")
	f.Add("+", "-1")
	f.Fuzz(func(t *testing.T, list, since string) {
		names, err := parseChannelList(list)
		if err == nil {
			seen := map[string]bool{}
			for _, n := range names {
				if seen[n] || !isStardustName(n) {
					t.Fatalf("%q gave %q", list, names)
				}
				seen[n] = true
				if _, err := ParseChannel("/stardust/"+n, false); err != nil {
					t.Fatalf("%q is not a valid Bayeux channel segment: %v", n, err)
				}
			}
		} else if !errors.Is(err, ErrBadChannel) {
			t.Fatalf("error %v", err)
		}
		if ts, err := parseSince(since); err == nil && since != "" && ts.IsZero() {
			t.Fatalf("since=%q parsed to the zero time", since)
		} else if err != nil && httpStatus(err) != 400 {
			t.Fatalf("since=%q: error maps to %d", since, httpStatus(err))
		}
	})
}
