package server

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

var userTemplateCases = []struct {
	pattern, user, channel string
	match                  bool // MatchUser
	overlaps               bool // OverlapsAnyUser
}{
	{"/user/{user}/**", "42", "/user/42/x", true, true},
	{"/user/{user}/**", "42", "/user/42/x/y", true, true},
	{"/user/{user}/**", "42", "/user/42/**", true, true},
	{"/user/{user}/**", "42", "/user/42/*", true, true},
	{"/user/{user}/**", "43", "/user/42/x", false, true},
	{"/user/{user}/**", "42", "/user/42", false, false},  // ** needs a segment
	{"/user/{user}/**", "42", "/user/*/x", false, false}, // not a channel: a wildcard is last
	{"/user/{user}/**", "42", "/user/*", false, false},   // /user/X, never /user/X/Y
	{"/user/{user}/**", "42", "/user/**", false, true},
	{"/user/{user}/**", "42", "/users/42/x", false, false},
	{"/user/{user}/**", "4/2", "/user/4/2/x", false, true},
	{"/user/{user}/**", "", "/user//x", false, false},
	{"/user/{user}/*", "*", "/user/**", false, true},
	{"/user/{user}/**", "**", "/user/**", false, true},
	{"/user/{user}/**", "a b", "/user/a b/x", false, false},
	{"/user/{user}/**", "{user}", "/user/{user}/x", false, false},
	{"/user/{user}/**", "alice@example.com", "/user/alice@example.com/inbox", true, true},
	{"/user/{user}", "42", "/user/42", true, true},
	{"/user/{user}", "42", "/user/42/x", false, false},
	{"/stardust/inbox_{user}", "42", "/stardust/inbox_42", true, true},
	{"/stardust/inbox_{user}", "42", "/stardust/inbox_43", false, true},
	{"/stardust/inbox_{user}", "42", "/stardust/inbox_", false, false},
	{"/stardust/inbox_{user}", "42", "/stardust/news", false, false},
	{"/stardust/inbox_{user}", "42", "/stardust/*", false, true},
	{"/stardust/inbox_{user}", "42", "/stardust/inbox_42x", false, true},
	{"/stardust/{user}_{user}", "7", "/stardust/7_7", true, true},
	{"/stardust/{user}_{user}", "7", "/stardust/7_8", false, false},
	{"/a/{user}/b/{user}", "x", "/a/x/b/x", true, true},
	{"/a/{user}/b/{user}", "x", "/a/x/b/y", false, false},
	{"/a/{user}/b/{user}", "x", "/a/x/b/*", false, true},
	{"/a/{user}/b/{user}", "x", "/a/x/**", false, true},
	{"/user/{user}", "42", "/user/*", false, true}, // everyone's: not only 42's
	{"/chat/**", "42", "/chat/room", true, true},   // no template: plain matching
	{"/chat/*", "", "/chat/room", true, true},
	{"/chat/*", "", "/chat/room/x", false, false},
	{"/user/{usr}/**", "42", "/user/42/x", false, false}, // bad template
	{"/user/{user}*", "42", "/user/42*", false, false},
	{"/user/{user}/**", "42", "not a channel", false, false},
	{"user/{user}", "42", "/user/42", false, false},
}

func TestUserTemplates(t *testing.T) {
	for _, tc := range userTemplateCases {
		t.Run(tc.pattern+" "+tc.user+" "+tc.channel, func(t *testing.T) {
			if got := MatchUser(tc.pattern, tc.user, tc.channel); got != tc.match {
				t.Errorf("MatchUser = %v, want %v", got, tc.match)
			}
			if got := OverlapsAnyUser(tc.pattern, tc.channel); got != tc.overlaps {
				t.Errorf("OverlapsAnyUser = %v, want %v", got, tc.overlaps)
			}
		})
	}
}

func TestCheckUserPattern(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		ok      bool
	}{
		{"/user/{user}/**", true},
		{"/stardust/inbox_{user}", true},
		{"/{user}", true},
		{"/chat/**", true},
		{"/user/{usr}", false},
		{"/user/{user", false},
		{"/user/}", false},
		{"/user/{user}*", false},
		{"/**/{user}", false},
		{"{user}", false},
		{"/user//{user}", false},
	} {
		err := CheckUserPattern(tc.pattern)
		if (err == nil) != tc.ok {
			t.Errorf("CheckUserPattern(%q) = %v, want ok %v", tc.pattern, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrBadChannel) {
			t.Errorf("CheckUserPattern(%q) = %v, not ErrBadChannel", tc.pattern, err)
		}
	}
}

func TestIdentityGrantsAndExpiry(t *testing.T) {
	id := Identity{User: "42", Channels: []string{"/user/{user}/**", "/news/*"}}
	for ch, want := range map[string]bool{
		"/user/42/a": true, "/user/43/a": false, "/news/today": true, "/news/**": false, "/other": false,
	} {
		if got := id.Grants(ch); got != want {
			t.Errorf("Grants(%q) = %v, want %v", ch, got, want)
		}
	}
	now := time.Unix(1000, 0)
	if id.Expired(now) {
		t.Error("an identity without ExpireAt expired")
	}
	id.ExpireAt = now
	if !id.Expired(now) || id.Expired(now.Add(-time.Second)) {
		t.Error("Expired is wrong at or before ExpireAt")
	}
	b, err := json.Marshal(Identity{User: "1"})
	if err != nil || string(b) != `{"user":"1"}` {
		t.Errorf("Identity JSON = %s, %v", b, err)
	}
}

func TestRefusal(t *testing.T) {
	var err error = &Refusal{Message: "not your room"}
	if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "not your room") {
		t.Errorf("Refusal: %v", err)
	}
	if (&Refusal{}).Error() == "" {
		t.Error("empty refusal message")
	}
}

// The properties that hold for any input: no panics; a user id that is not a
// channel segment never matches a template; what MatchUser accepts for the
// caller, OverlapsAnyUser accepts for someone; expanding for a valid user and
// matching the result succeeds.
func FuzzUserTemplate(f *testing.F) {
	for _, tc := range userTemplateCases {
		f.Add(tc.pattern, tc.user, tc.channel)
	}
	f.Fuzz(func(t *testing.T, pattern, user, channel string) {
		m := MatchUser(pattern, user, channel)
		o := OverlapsAnyUser(pattern, channel)
		templated := strings.Contains(pattern, UserTemplate)
		if m && templated && !IsUserSegment(user) {
			t.Fatalf("MatchUser(%q, %q, %q): user is not a segment", pattern, user, channel)
		}
		if m && !o {
			t.Fatalf("MatchUser(%q, %q, %q) but not OverlapsAnyUser", pattern, user, channel)
		}
		// Without a template, the same answers as RulesACL's own matching.
		if !strings.Contains(pattern, "{") {
			ps, err1 := ParseChannel(pattern, true)
			cs, err2 := ParseChannel(channel, true)
			if err1 == nil && err2 == nil && (o != overlaps(ps, cs) || m != covers(ps, cs)) {
				t.Fatalf("%q %q: OverlapsAnyUser %v MatchUser %v; overlaps %v covers %v", pattern, channel, o, m, overlaps(ps, cs), covers(ps, cs))
			}
		}
		if exp, err := ExpandUser(pattern, user); err == nil && !IsWild(exp) {
			if !MatchUser(pattern, user, exp) {
				t.Fatalf("MatchUser(%q, %q, %q) false for its own expansion", pattern, user, exp)
			}
		}
	})
}
