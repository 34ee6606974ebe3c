package redis

import (
	"strings"
	"testing"
	"time"
)

// clientOption with sentinels: rueidis asks them for the master, with the
// sentinels' own password, and the URL gives only the master's.
func TestClientOptionSentinels(t *testing.T) {
	co, err := clientOption(Options{URL: "redis://:masterpw@ignored:6379/2", Sentinels: []string{"10.0.0.1:26379", "10.0.0.2:26379"},
		MasterName: "mymaster", SentinelPassword: "sentpw", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(co.InitAddress, ",") != "10.0.0.1:26379,10.0.0.2:26379" || co.Sentinel.MasterSet != "mymaster" ||
		co.Sentinel.Password != "sentpw" || co.Password != "masterpw" || co.SelectDB != 2 || co.Sentinel.TopologyRefreshInterval != sentinelRefresh {
		t.Errorf("options: init %v, master set %q, sentinel password %q, password %q, db %d, refresh %v",
			co.InitAddress, co.Sentinel.MasterSet, co.Sentinel.Password, co.Password, co.SelectDB, co.Sentinel.TopologyRefreshInterval)
	}
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no master name", Options{URL: "redis://x:1/0", Sentinels: []string{"a:1"}}, "without a master name"},
		{"no port", Options{URL: "redis://x:1/0", Sentinels: []string{"a"}, MasterName: "m"}, `sentinel "a"`},
		{"socket", Options{URL: "unix:///run/redis.sock", Sentinels: []string{"a:1"}, MasterName: "m"}, "want redis:// or rediss://"},
	} {
		if _, err := clientOption(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	if w := (Options{URL: "redis://:secret@host:6379/0"}).where(); strings.Contains(w, "secret") {
		t.Errorf("where() shows the password: %s", w)
	}
}
