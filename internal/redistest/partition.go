package redistest

import (
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
)

// StartPartitionableCluster is StartCluster with a cluster bus that the
// test can cut (Partition): node i sends its bus traffic from its own
// loopback address, 127.0.1.(i+1) (bind-source-addr), and every node's
// bus port is announced behind a forwarder of the test's, which drops
// what comes from or goes to a partitioned node. Clients still reach
// every node on 127.0.0.1, as a Stardust process on the far side of a
// partition would. Linux only (any address of 127.0.0.0/8 is local
// there); elsewhere the test is skipped.
func StartPartitionableCluster(t testing.TB) *Cluster {
	t.Helper()
	if l, err := net.Listen("tcp", "127.0.1.1:0"); err != nil {
		t.Skipf("a partitionable Cluster needs the loopback address 127.0.1.1: %v", err)
	} else {
		_ = l.Close()
	}
	cut := &busCut{nodes: map[string]bool{}, links: map[net.Conn][2]string{}}
	c := startClusterWith(t, nil, func(i int) string {
		src := busSource(i)
		bus := freePort(t)
		fwd := cut.forward(t, src, bus)
		// protected-mode would refuse a replica's link from 127.0.1.x
		// (not 127.0.0.1); every address bound is a loopback one.
		return fmt.Sprintf("protected-mode no\nbind 127.0.0.1 %s\nbind-source-addr %s\ncluster-announce-ip 127.0.0.1\ncluster-port %d\ncluster-announce-bus-port %d\n",
			src, src, bus, fwd)
	})
	c.cut = cut
	return c
}

// busSource is the loopback address node i sends its bus traffic from.
func busSource(i int) string { return fmt.Sprintf("127.0.1.%d", i+1) }

// source is the loopback address node s sends its bus traffic from (the
// nodes are started in order: startClusterWith).
func (c *Cluster) source(s *Server) string { return busSource(slices.Index(c.Nodes, s)) }

// Partition cuts node s off the cluster bus: no other node hears from it,
// and it hears from none (its replicas included), while clients still
// reach it. The other masters then fail it over, and it answers
// CLUSTERDOWN once it has missed them for cluster-node-timeout. Heal
// undoes it. Only for a Cluster of StartPartitionableCluster.
func (c *Cluster) Partition(t testing.TB, s *Server) {
	t.Helper()
	if c.cut == nil {
		t.Fatal("Partition needs a Cluster of StartPartitionableCluster")
	}
	c.cut.set(c.source(s), true)
}

// Heal ends the partition of node s.
func (c *Cluster) Heal(t testing.TB, s *Server) {
	t.Helper()
	if c.cut == nil {
		t.Fatal("Heal needs a Cluster of StartPartitionableCluster")
	}
	c.cut.set(c.source(s), false)
}

// Partitioned reports whether s is cut off the cluster bus now.
func (c *Cluster) Partitioned(s *Server) bool {
	if c.cut == nil {
		return false
	}
	c.cut.mu.Lock()
	defer c.cut.mu.Unlock()
	return c.cut.nodes[c.source(s)]
}

// busCut is the forwarders of a partitionable Cluster's bus, and which
// nodes (by source address) are cut off.
type busCut struct {
	mu    sync.Mutex
	nodes map[string]bool        // source address -> cut off
	links map[net.Conn][2]string // each forwarded connection: {from, to}
}

// forward listens on a free loopback port and forwards to the bus port
// of the node whose source address is to, unless either end is cut off.
func (b *busCut) forward(t testing.TB, to string, bus int) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			from := in.RemoteAddr().(*net.TCPAddr).IP.String()
			go b.link(in, from, to, fmt.Sprintf("127.0.0.1:%d", bus))
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

func (b *busCut) link(in net.Conn, from, to, target string) {
	b.mu.Lock()
	off := b.nodes[from] || b.nodes[to]
	b.mu.Unlock()
	if off {
		_ = in.Close()
		return
	}
	up, err := net.Dial("tcp", target)
	if err != nil {
		_ = in.Close()
		return
	}
	b.mu.Lock()
	b.links[in], b.links[up] = [2]string{from, to}, [2]string{from, to}
	b.mu.Unlock()
	splice(in, up)
	b.mu.Lock()
	delete(b.links, in)
	delete(b.links, up)
	b.mu.Unlock()
}

// set cuts the node of source address src off (or lets it back), closing
// the links it has now.
func (b *busCut) set(src string, off bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nodes[src] = off
	if !off {
		return
	}
	for conn, ends := range b.links {
		if ends[0] == src || ends[1] == src {
			_ = conn.Close()
		}
	}
}
