package redis

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/stardust-go/stardust/server"
)

// Routing of the sharded engine (shard.go): which shard holds a channel,
// a session's home, an address's counts, and the hash tag of each shard.

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// MaxShards bounds Options.Shards: each shard is one slot, a pub/sub
// connection and a sweep per process.
const MaxShards = 256

// crc16 is the CRC16 of Redis Cluster's key hashing (CCITT, polynomial
// 0x1021, initial 0: XMODEM).
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// KeySlot returns the Redis Cluster slot of a key, as CLUSTER KEYSLOT
// does: of its hash tag (the first "{...}" with something inside) if it
// has one, else of the whole key.
func KeySlot(key string) int {
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if end := strings.IndexByte(key[open+1:], '}'); end > 0 {
			key = key[open+1 : open+1+end]
		}
	}
	return int(crc16([]byte(key)) % clusterSlots)
}

// ShardPrefixes returns the key prefix of each of n shards of a site whose
// prefix is prefix: the prefix's hash tag (made of its name if it has
// none, as ClusterPrefix does) with ".K.J" added, J the first number for
// which the tag's slot lies in the K-th of n equal ranges of the 16384
// slots. A Cluster whose masters own equal ranges of slots so holds n/m
// shards on each of its m masters. "stardust:" in 3 shards gives
// "{stardust.0.J}:", "{stardust.1.J}:", "{stardust.2.J}:".
func ShardPrefixes(prefix string, n int) ([]string, error) {
	if n < 1 || n > MaxShards {
		return nil, fmt.Errorf("redis engine: %d shards: want 1 to %d", n, MaxShards)
	}
	p, err := ClusterPrefix(prefix)
	if err != nil {
		return nil, err
	}
	open := strings.IndexByte(p, '{')
	end := open + 1 + strings.IndexByte(p[open+1:], '}')
	tag := p[open+1 : end]
	out := make([]string, n)
	for k := range n {
		lo, hi := k*clusterSlots/n, (k+1)*clusterSlots/n
		for j := 0; ; j++ {
			t := tag + "." + strconv.Itoa(k) + "." + strconv.Itoa(j)
			if s := int(crc16([]byte(t)) % clusterSlots); s >= lo && s < hi {
				out[k] = p[:open+1] + t + p[end:]
				break
			}
		}
	}
	return out, nil
}

// pick hashes s to one of n shards.
func pick(s string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(s))
	return int(h.Sum32() % uint32(n))
}

// firstSegment returns the first segment of a channel name or pattern:
// "/a/b/*" gives "a". Every pattern a channel can match starts with the
// channel's first segment (a wildcard needs a parent segment), so a
// channel and every subscription that receives it live in one shard.
func firstSegment(name string) string {
	seg, _, _ := strings.Cut(strings.TrimPrefix(name, "/"), "/")
	return seg
}

// ShardOf returns the shard, of n, that holds a channel or pattern: the
// one of its first segment.
func ShardOf(name string, n int) int { return pick(firstSegment(name), n) }

// channelShard is the shard of a channel or pattern.
func (s *Sharded) channelShard(name string) int { return ShardOf(name, len(s.shards)) }

// home is the shard that holds a session itself (created there, its
// attributes, its own queue, its removal and expiry): by its id.
func (s *Sharded) home(id string) int { return pick(id, len(s.shards)) }

// Sequence numbers: shard k's number q is q*n+k to the outside, so that
// numbers are unique, and increase per channel (a channel lives in one
// shard), over the whole site.

func (s *Sharded) outSeq(k int, q uint64) uint64 {
	if q == 0 {
		return 0
	}
	return q*uint64(len(s.shards)) + uint64(k)
}

// inSeq is the first number of shard k whose outside number is above
// after: History's "after".
func (s *Sharded) inSeq(k int, after uint64) uint64 {
	n := uint64(len(s.shards))
	if after < uint64(k) {
		return 0
	}
	return (after - uint64(k)) / n
}

var _ server.SequenceSpaces = (*Sharded)(nil)

// SameSpace implements server.SequenceSpaces: numbers of one shard.
func (s *Sharded) SameSpace(a, b uint64) bool {
	n := uint64(len(s.shards))
	return a%n == b%n
}
