package redis

import (
	"strings"
	"testing"
	"time"
)

// clientOption with a Cluster: the seeds are rueidis's first addresses, the
// URL gives the password and TLS, and a TLS node is checked against its own
// host, not the URL's.
func TestClientOptionCluster(t *testing.T) {
	co, err := clientOption(Options{URL: "rediss://:pw@ignored:6379/0", Cluster: []string{"10.0.0.1:6379", "10.0.0.2:6379"}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	seeds := append([]string(nil), co.InitAddress...)
	if strings.Join(seeds, ",") != "10.0.0.1:6379,10.0.0.2:6379" || co.Password != "pw" || co.SelectDB != 0 ||
		co.ClusterOption.ShardsRefreshInterval != clusterRefresh || !co.ShuffleInit {
		t.Errorf("options: init %v, password %q, db %d, refresh %v, shuffle %v", seeds, co.Password, co.SelectDB,
			co.ClusterOption.ShardsRefreshInterval, co.ShuffleInit)
	}
	if co.TLSConfig == nil || co.TLSConfig.ServerName != "" {
		t.Errorf("TLS config %+v; want TLS, each node checked against the host it is reached at (no ServerName)", co.TLSConfig)
	}
	if w := (Options{Cluster: []string{"10.0.0.1:6379"}, URL: "redis://:secret@x/0"}).where(); strings.Contains(w, "secret") || !strings.Contains(w, "10.0.0.1:6379") {
		t.Errorf("where() = %s; want the seeds, never the password", w)
	}
}
