package server

import "testing"

// FuzzACLUserRule: a rule with {user} in its channel and user:{user} in its
// lists never lets a user subscribe to or publish on a channel it is about
// unless the channel is the user's own (MatchUser), whatever the pattern,
// user id and channel; and a rule CheckACLRule accepts builds.
func FuzzACLUserRule(f *testing.F) {
	for _, s := range [][3]string{
		{"/user/{user}/**", "42", "/user/42/x"},
		{"/user/{user}/**", "42", "/user/43/x"},
		{"/stardust/inbox_{user}", "42", "/stardust/*"},
		{"/a/{user}_{user}", "x", "/a/x_y"},
		{"/user/{user}", "4/2", "/user/4/2"},
		{"/u/{usr}", "1", "/u/1"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, pattern, user, channel string) {
		rule := ACLRule{Channel: pattern, Subscribe: []string{"user:" + UserTemplate}, Publish: []string{"user:" + UserTemplate}}
		acl, err := RulesACL([]ACLRule{rule})
		if (err == nil) != (CheckACLRule(rule) == nil) {
			t.Fatalf("RulesACL and CheckACLRule disagree on %q: %v", pattern, err)
		}
		if err != nil {
			return
		}
		if _, err := ParseChannel(channel, true); err != nil {
			return
		}
		c := (&Hub{}).NewClient("c", KindBayeux, 0, "")
		_ = c.SetAttr(AttrUser, user)
		about := OverlapsAnyUser(pattern, channel)
		own := MatchUser(pattern, user, channel)
		if acl(c, &BayeuxMessage{Channel: "/meta/subscribe", Subscriptions: []string{channel}}) == nil && about && !own {
			t.Fatalf("user %q may subscribe to %q under %q", user, channel, pattern)
		}
		if _, err := ParseChannel(channel, false); err == nil && !IsMeta(channel) { // meta messages are not checked
			if acl(c, &BayeuxMessage{Channel: channel}) == nil && about && !own {
				t.Fatalf("user %q may publish on %q under %q", user, channel, pattern)
			}
		}
	})
}
