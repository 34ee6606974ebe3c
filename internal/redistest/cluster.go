package redistest

import (
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stardust-go/stardust/internal/testenv"
)

// ClusterNodeTimeout is the tests' cluster-node-timeout: a master that does
// not answer for this long is failing, and its replica is promoted a moment
// after the other masters agree (about two or three times this).
const ClusterNodeTimeout = time.Second

// Cluster is a running Redis Cluster of three masters with one replica
// each, made by redis-cli --cluster create.
type Cluster struct {
	Nodes []*Server // every node, masters and replicas
	Seeds []string  // their addresses, for a client's seed list
	// CAFile, of a Cluster started by StartClusterTLS, is the certificate
	// of the authority that signed the nodes' (PEM).
	CAFile string

	cut *busCut // the bus forwarders of StartPartitionableCluster
}

// StartCluster runs six redis-server processes with cluster-enabled (on
// free loopback ports, their files in temp dirs), makes them a Cluster of
// three masters and three replicas with redis-cli, and returns once every
// node reports cluster_state:ok and knows every replica, and every replica
// holds its master's link (about ten seconds).
// It skips the test loudly (fails under STARDUST_REQUIRE_INTEGRATION=1)
// without redis-server or redis-cli; the nodes stop when the test ends.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	return startClusterWith(t, nil, nil)
}

// StartClusterTLS is StartCluster with every node speaking TLS only (to
// clients, to its replicas and on the cluster bus), with a certificate for
// 127.0.0.1 signed by an authority of the test's (CAFile); Server.TLS
// trusts it.
func StartClusterTLS(t testing.TB) *Cluster {
	t.Helper()
	return startClusterWith(t, newTestCA(t), nil)
}

// startClusterWith starts the six nodes, each with the lines bus(i) gives
// for its cluster bus (nil: a free cluster-port), and makes them a Cluster.
func startClusterWith(t testing.TB, ca *testCA, bus func(i int) string) *Cluster {
	t.Helper()
	server := testenv.RequireProgram(t, "redis-server", "redis-server")
	cli := testenv.RequireProgram(t, "redis-cli", "redis-tools")
	c := &Cluster{}
	var cliTLS []string
	for i := range 6 {
		var busConf string
		if bus != nil {
			busConf = bus(i)
		} else {
			busConf = fmt.Sprintf("cluster-port %d\n", freePort(t))
		}
		conf := fmt.Sprintf("%scluster-enabled yes\ncluster-config-file nodes.conf\ncluster-node-timeout %d\n%s",
			serverConf, ClusterNodeTimeout.Milliseconds(), busConf)
		if ca != nil {
			conf += ca.serverConf
			c.CAFile, cliTLS = ca.caFile, []string{"--tls", "--cacert", ca.caFile}
		}
		s := startProgram(t, server, conf)
		if ca != nil {
			s.TLS = ca.client.Clone()
		}
		c.Nodes = append(c.Nodes, s)
		c.Seeds = append(c.Seeds, s.Addr)
	}
	args := append(append(append(cliTLS, "--cluster", "create"), c.Seeds...), "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range c.Nodes {
		for {
			info := s.Do(t, "CLUSTER", "INFO")
			repl := s.Do(t, "INFO", "replication")
			if strings.Contains(info, "cluster_state:ok") &&
				(strings.Contains(repl, "role:master") || strings.Contains(repl, "master_link_status:up")) &&
				knowsReplicas(t, s) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster node %s not ready within 30 s:\n%s\n%s\n%s", s.Addr, info, repl, s.Do(t, "CLUSTER", "NODES"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// knowsReplicas reports whether node s knows a replica of every master
// (CLUSTER SLOTS lists one after each range's master): a few seconds after
// redis-cli made the Cluster, word of them has gone round; before, a
// master's death might find no one to vote its replica in.
func knowsReplicas(t testing.TB, s *Server) bool {
	t.Helper()
	ranges, err := s.result(t, "CLUSTER", "SLOTS").ToArray()
	if err != nil || len(ranges) == 0 {
		return false
	}
	for _, r := range ranges {
		if f, err := r.ToArray(); err != nil || len(f) < 4 {
			return false
		}
	}
	return true
}

// serverConf is the configuration every test redis-server starts with: no
// persistence (a server killed comes back empty), full syncs at once.
const serverConf = "protected-mode yes\nsave \"\"\nappendonly no\nrepl-diskless-sync-delay 0\n"

// freePort returns a loopback port free at the time of asking, below the
// kernel's ephemeral range.
func freePort(t testing.TB) int {
	t.Helper()
	return testenv.FreePorts(t, 1)
}

// SlotNodes returns the master that serves key's slot now and its
// replicas, as a live node's CLUSTER SLOTS tells.
func (c *Cluster) SlotNodes(t testing.TB, key string) (master *Server, replicas []*Server) {
	t.Helper()
	ask := c.live(t)
	slot, err := ask.result(t, "CLUSTER", "KEYSLOT", key).AsInt64()
	if err != nil {
		t.Fatalf("CLUSTER KEYSLOT %s: %v", key, err)
	}
	ranges, err := ask.result(t, "CLUSTER", "SLOTS").ToArray()
	if err != nil {
		t.Fatalf("CLUSTER SLOTS: %v", err)
	}
	for _, r := range ranges {
		f, err := r.ToArray()
		if err != nil || len(f) < 3 {
			continue
		}
		from, _ := f[0].AsInt64()
		to, _ := f[1].AsInt64()
		if slot < from || slot > to {
			continue
		}
		for i, n := range f[2:] {
			hp, err := n.ToArray()
			if err != nil || len(hp) < 2 {
				continue
			}
			host, _ := hp[0].ToString()
			port, _ := hp[1].AsInt64()
			s := c.node(net.JoinHostPort(host, strconv.FormatInt(port, 10)))
			if i == 0 {
				master = s
			} else if s != nil {
				replicas = append(replicas, s)
			}
		}
	}
	if master == nil {
		t.Fatalf("no node serves the slot %d of %q", slot, key)
	}
	return master, replicas
}

// WaitSlotMaster waits until a node other than old serves key's slot (its
// replica was promoted), and returns it.
func (c *Cluster) WaitSlotMaster(t testing.TB, key string, old *Server) *Server {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m, _ := c.SlotNodes(t, key); m != old {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("no replica took over the slot of %q from %s within 30 s", key, old.Addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// live returns a node that runs and is not cut off (Partition): its view
// of the Cluster is the majority's.
func (c *Cluster) live(t testing.TB) *Server {
	t.Helper()
	for _, s := range c.Nodes {
		if s.cmd != nil && !c.Partitioned(s) {
			return s
		}
	}
	t.Fatal("no cluster node runs")
	return nil
}

func (c *Cluster) node(addr string) *Server {
	for _, s := range c.Nodes {
		if s.Addr == addr {
			return s
		}
	}
	return nil
}
