package redis

import (
	"encoding/json"
	"hash/maphash"
	"sync"
	"time"

	"github.com/stardust-go/stardust/server"
)

// wire is a message as stored in Redis; Seq is the stream id.
type wire struct {
	Channel  string          `json:"c"`
	Data     json.RawMessage `json:"d,omitempty"`
	ID       string          `json:"i,omitempty"`
	ClientID string          `json:"k,omitempty"`
	Ext      json.RawMessage `json:"e,omitempty"`
	Presence bool            `json:"p,omitempty"` // before Time: the scripts read the time at the end
	Time     int64           `json:"t"`
	Reply    bool            `json:"r,omitempty"`
}

func encode(m *server.Message) string {
	b, _ := json.Marshal(wire{Channel: m.Channel, Data: m.Data, ID: m.ID, ClientID: m.ClientID, Ext: m.Ext,
		Presence: m.Presence, Time: m.Time.UnixMicro(), Reply: m.Reply})
	return string(b)
}

func decode(seq uint64, payload string) (*server.Message, error) {
	var w wire
	if err := json.Unmarshal([]byte(payload), &w); err != nil {
		return nil, err
	}
	return &server.Message{Channel: w.Channel, Data: w.Data, ID: w.ID, ClientID: w.ClientID, Ext: w.Ext,
		Reply: w.Reply, Presence: w.Presence, Seq: seq, Time: time.UnixMicro(w.Time)}, nil
}

// msgCache keeps the newest decoded messages, so that a message fetched
// for many clients is decoded (and encoded for each protocol) once per
// process. An entry is found by sequence number and answers only for the
// same payload (compared by a hash with a per-cache random seed): after
// Redis lost data, a sequence number may name another message, and the
// cache must never answer for it.
type msgCache struct {
	mu   sync.Mutex
	seed maphash.Seed
	size int
	m    map[uint64]cached
	ring []uint64
	next int
}

type cached struct {
	sum uint64 // maphash of the payload
	m   *server.Message
}

func (c *msgCache) init(size int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seed = maphash.MakeSeed()
	c.size, c.m, c.ring, c.next = size, make(map[uint64]cached, size), make([]uint64, size), 0
}

func (c *msgCache) put(seq uint64, payload string, m *server.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sum := maphash.String(c.seed, payload)
	if old, ok := c.m[seq]; ok {
		if old.sum != sum {
			c.m[seq] = cached{sum, m} // the newer message of this number
		}
		return
	}
	delete(c.m, c.ring[c.next])
	c.ring[c.next] = seq
	c.next = (c.next + 1) % c.size
	c.m[seq] = cached{sum, m}
}

func (c *msgCache) get(seq uint64, payload string) (*server.Message, error) {
	c.mu.Lock()
	hit, ok := c.m[seq]
	seed := c.seed
	c.mu.Unlock()
	if ok && hit.sum == maphash.String(seed, payload) {
		return hit.m, nil
	}
	m, err := decode(seq, payload)
	if err != nil {
		return nil, err
	}
	c.put(seq, payload, m)
	return m, nil
}
