// Package redis is the Redis engine: several stardust processes share
// sessions, subscriptions, queues, history and the message sequence through
// one Redis server, so that any process can serve any request of any client
// and a process can die without its clients losing queued messages.
//
// How it works: a publish is one Lua script that appends the message to one
// capped stream per subscribed pattern that can match its channel (at most
// d+1 for a channel of depth d), whatever the number of subscribers, and
// publishes it (number, stream offset, bytes) once on each pattern's
// pub/sub topic. A
// session keeps one cursor (the last sequence number it committed) and, per
// subscription, how far it has seen that stream: a fetch reads after the
// cursor and takes nothing, and the cursor moves only when the answer has
// reached the client (or, with the ack extension, when the client says so).
// Each process subscribes to the topics of the patterns its held polls
// need, and wakes them; a "ctl" topic carries session notices (a poll
// started elsewhere, removal, expiry, a change of subscriptions).
// A process keeps the sessions it holds in memory, fed by those topics, and
// writes their cursors in batches (mirror.go, flush.go): a delivery to a
// held client costs Redis almost nothing.
//
// The embedders who use only the memory engine never link this package.
package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"github.com/sirupsen/logrus"

	"github.com/stardust-go/stardust/server"
)

// Options configure the Redis engine. Zero values take the defaults noted.
type Options struct {
	URL     string        // redis://host:port/db, rediss://..., unix:///path; default redis://127.0.0.1:6379/0
	Prefix  string        // key prefix; default "stardust:"
	Timeout time.Duration // bound of each call to Redis; default 2s
	Limits  server.Limits
	// Log receives one line when Redis goes away and one when it is back.
	Log *logrus.Entry

	// Sentinels, when set, are Redis Sentinel addresses (host:port): the
	// engine asks them for the master of MasterName and follows a
	// failover by itself (sentinel.go); URL then gives only the master's
	// password, database and TLS, its host being ignored.
	Sentinels        []string
	MasterName       string
	SentinelPassword string // AUTH of the sentinels, if they require it

	// Cluster, when set, are seed nodes (host:port) of a Redis Cluster
	// (cluster.go): every key of the site then carries one hash tag (the
	// prefix becomes "{stardust}:"), so that it lives in one slot on one
	// master, and the Cluster's replicas take over when that master dies.
	// URL then gives only the password and TLS (database 0). Exclusive of
	// Sentinels.
	Cluster []string
	// shared, set by NewSharded, is the client of every shard's engine:
	// one set of connections to the Cluster, closed by the Sharded.
	shared rueidis.Client

	// Shards, above 1, splits the site by channel into that many shards,
	// each one slot of the Cluster under a hash tag of its own, spread
	// over its masters: NewSharded (shard.go), not New, opens such a
	// site. 0 or 1: one slot, the keys named as without it.
	Shards int

	// Mirror serves the sessions this process holds from memory
	// (mirror.go): almost no Redis work per delivery. A session is
	// mirrored from its second poll in a row here, or a watch's third
	// fetch (a WebSocket, an SSE stream). Off when false; stardust turns
	// it on unless engine.redis_mirror is false.
	Mirror bool
	// MirrorFromFirstPoll, with Mirror, mirrors a session from its first
	// watch here rather than its second poll in a row: every poll of a
	// session is then served from memory, as the mirrors' tests need.
	// Production leaves it off: polls spread round robin over processes
	// would each cost a load and a hand-over.
	MirrorFromFirstPoll bool
}

// Engine is a server.Engine on a Redis server. Safe for concurrent use.
type Engine struct {
	opts   Options
	client rueidis.Client
	node   string   // this process, in notices and connection counts
	p      string   // key prefix: with Cluster, one hash tag (cluster.go)
	keys   []string // KEYS of every script call: the prefix, which routes it to the slot's master on a Cluster

	mu       sync.Mutex
	watchers map[string][]*watch // by session id
	topics   map[string]*topic   // pattern topics this process listens to
	lists    map[string]subsList // by session id: its subscriptions as last read for its watches
	echoes   map[string]echo     // by session id: this process's "r" notices not yet heard back (notices.go)
	// hearing, when set, runs first for each ctl notice on the pub/sub
	// connection's goroutine (tests: OnNotice).
	hearing  atomic.Pointer[func(notice string)]
	sub      rueidis.DedicatedClient
	subReady chan struct{} // closed once the first pub/sub connection is up
	epoch    string        // the epoch key as last read
	runID    string        // the Redis server's run_id as last read: a new one is a restart or a failover

	// highWater is the highest sequence number this process has seen: a
	// Redis that comes back below it has lost data (see checkEpoch).
	highWater atomic.Uint64
	// unsure is set when this process may be talking to another Redis
	// than the one it last checked (a call failed, the pub/sub connection
	// was lost): before it hands out a number again it checks that Redis
	// (confirmMaster), so that the first number handed out by any process
	// on a new master comes after the record of where that master began.
	unsure atomic.Bool
	// reconnectGate, when set, holds the pub/sub connection's next
	// reconnection until it is closed (tests: HoldReconnect).
	reconnectGate atomic.Pointer[chan struct{}]

	cache msgCache
	mir   mirrorSet // the sessions this process watches, in memory (mirror.go)
	conns connSet   // held connections per address (conns.go)

	down     atomic.Bool // the pub/sub connection is lost: log once per outage
	moving   atomic.Bool // the pub/sub connection leaves a node no longer the slot's master (followMaster)
	done     chan struct{}
	closed   sync.Once
	wg       sync.WaitGroup
	cancelFn func()
}

var _ server.Engine = (*Engine)(nil)

// watch is one Watch call: the patterns it listens to and its callback.
type watch struct {
	id       string
	notify   func(server.Wake)
	patterns []string
	stopped  bool
}

// subsList is a session's subscriptions as read for its watches, kept
// while its version in Redis is the same, and dropped topicGrace after
// its last use.
type subsList struct {
	version  string
	patterns []string // read-only: shared by the watches
	used     time.Time
}

// topic is one pattern's pub/sub subscription, kept while watches need it
// and dropped a little after the last one ends.
type topic struct {
	refs    int
	watches map[*watch]struct{}
	unused  time.Time // when refs fell to 0
	live    bool      // SUBSCRIBE confirmed on the current connection
}

// New connects to Redis and starts listening for notices. It fails when
// Redis cannot be reached within the timeout.
func New(opts Options) (*Engine, error) {
	opts.defaults()
	if opts.Shards > 1 {
		return nil, fmt.Errorf("redis engine: %d shards: open a sharded site with NewSharded (or Open)", opts.Shards)
	}
	if len(opts.Cluster) > 0 {
		p, err := ClusterPrefix(opts.Prefix) // cluster.go
		if err != nil {
			return nil, err
		}
		opts.Prefix = p
	}
	client := opts.shared
	if client == nil {
		var err error
		if client, err = connect(opts); err != nil {
			return nil, err
		}
	}
	e := &Engine{opts: opts, client: client, node: newID(), p: opts.Prefix, keys: []string{opts.Prefix},
		watchers: map[string][]*watch{}, topics: map[string]*topic{}, lists: map[string]subsList{},
		echoes:   map[string]echo{},
		subReady: make(chan struct{}), done: make(chan struct{})}
	e.cache.init(4096)
	e.mir.init(opts.Limits)
	e.conns.m, e.conns.dirty = map[string]*connCount{}, map[string]bool{}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancelFn = cancel
	e.wg.Add(3)
	go e.listen(ctx)
	go e.janitor(ctx)
	go e.flusher(ctx) // flush.go
	select {
	case <-e.subReady:
	case <-time.After(opts.Timeout):
		_ = e.Close()
		return nil, fmt.Errorf("%w: redis at %s does not answer", server.ErrEngine, opts.where())
	}
	return e, nil
}

// defaults fills in what the options leave unset.
func (o *Options) defaults() {
	if o.URL == "" {
		o.URL = "redis://127.0.0.1:6379/0"
	}
	if o.Prefix == "" {
		o.Prefix = "stardust:"
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Log == nil {
		o.Log = logrus.NewEntry(logrus.New())
	}
	o.Limits.Defaults()
}

// Open opens the engine the options describe: New's, or with Shards above
// 1 NewSharded's.
func Open(opts Options) (server.Engine, error) {
	if opts.Shards > 1 {
		return NewSharded(opts)
	}
	return New(opts)
}

// connect makes the client the options describe, and checks that it is of
// the kind they name (cluster.go).
func connect(opts Options) (rueidis.Client, error) {
	co, err := clientOption(opts)
	if err != nil {
		return nil, err
	}
	client, err := rueidis.NewClient(co)
	if err != nil {
		return nil, fmt.Errorf("%w: redis at %s: %v", server.ErrEngine, opts.where(), err)
	}
	if err := checkMode(opts, client); err != nil { // cluster.go
		client.Close()
		return nil, err
	}
	return client, nil
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (e *Engine) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.opts.Timeout)
}

// fail wraps an error of Redis as the engine being unavailable.
func fail(err error) error {
	if err == nil || errors.Is(err, server.ErrEngine) {
		return err
	}
	return fmt.Errorf("%w: redis: %v", server.ErrEngine, err)
}

func unknown(id string) error { return fmt.Errorf("%w: %s", server.ErrUnknownClient, id) }

func nowMS() string { return strconv.FormatInt(time.Now().UnixMilli(), 10) }

// exec runs a script and returns its result.
func (e *Engine) exec(ctx context.Context, s *rueidis.Lua, args ...string) (rueidis.RedisResult, error) {
	ctx, cancel := e.call(ctx)
	defer cancel()
	r := e.script(ctx, s, args...)
	for isClusterDown(r.Error()) && ctx.Err() == nil {
		// A master cut off from the Cluster answers so, without running
		// the script; rueidis may route to it until a refresh of its slot
		// map asks another node. Try again a moment later, on what may be
		// another master: checked first, as after any failover.
		e.unsure.Store(true)
		select {
		case <-ctx.Done():
		case <-time.After(clusterDownRetry):
		}
		if e.confirmMaster(ctx) == nil { // pubsub.go
			r = e.script(ctx, s, args...)
		}
	}
	if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) {
		e.unsure.Store(true) // the next call may reach another Redis
		return r, fail(err)
	}
	return r, nil
}

// script runs a script with the prefix as ARGV[1] (each script builds its
// keys from it) and as its one KEYS entry: a script without keys goes to
// any node of a Redis Cluster, which refuses it keys of another; with the
// prefix (one hash tag there) it goes to the master of the site's slot.
// On one Redis the KEYS entry changes nothing.
func (e *Engine) script(ctx context.Context, s *rueidis.Lua, args ...string) rueidis.RedisResult {
	return s.Exec(ctx, e.client, e.keys, append([]string{e.p}, args...))
}

// argBool is a flag as the scripts read it in ARGV: "1" or "0".
func argBool(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func (e *Engine) execInt(ctx context.Context, s *rueidis.Lua, args ...string) (int64, error) {
	r, err := e.exec(ctx, s, args...)
	if err != nil {
		return 0, err
	}
	n, err := r.AsInt64()
	return n, fail(err)
}

// CreateSession implements server.Engine.
func (e *Engine) CreateSession(ctx context.Context, s server.Session) error {
	return e.createSession(ctx, s, false)
}

// createSession stores a session, or with copy a shard's copy of a
// session of another shard (shard.go): not counted against MaxClients,
// and counted apart in the stats so that Sharded.Stats counts it once.
func (e *Engine) createSession(ctx context.Context, s server.Session, copy bool) error {
	args := []string{s.ID, s.Kind, s.Remote, strconv.FormatInt(s.Timeout.Milliseconds(), 10), nowMS(),
		strconv.Itoa(e.opts.Limits.MaxClients), newID(), strconv.FormatUint(e.highWater.Load(), 10), strconv.Itoa(drainChunk), argBool(copy)}
	for k, v := range s.Attrs {
		args = append(args, k, v)
	}
	if err := e.confirmMaster(ctx); err != nil { // pubsub.go
		return err
	}
	n, err := e.execInt(ctx, scriptCreate, args...)
	switch {
	case err != nil:
		return err
	case n == 0:
		return server.ErrExists
	case n == -2:
		return fmt.Errorf("%w: %d sessions", server.ErrTooManyClients, e.opts.Limits.MaxClients)
	case copy:
		return nil // the user index is the home shard's
	}
	return e.indexUser(ctx, s.ID, s.Attrs[server.AttrUser]) // api.go
}

// Session implements server.Engine.
func (e *Engine) Session(ctx context.Context, id string) (server.Session, error) {
	if s, ok := e.mirrorSession(id); ok {
		return s, nil
	}
	gen, _ := e.attrGen(id)
	cctx, cancel := e.call(ctx)
	defer cancel()
	res := e.client.DoMulti(cctx,
		e.client.B().Hgetall().Key(e.p+"s:"+id).Build(),
		e.client.B().Get().Key(e.p+"epoch").Build())
	m, err := res[0].AsStrMap()
	if err != nil {
		return server.Session{}, fail(err)
	}
	epoch, err := res[1].ToString()
	if err != nil && !rueidis.IsRedisNil(err) {
		return server.Session{}, fail(err)
	}
	s, ok := sessionOf(id, m)   // mirror.go
	if !ok || m["e"] != epoch { // none, or one of data Redis lost (see scriptRenew)
		return server.Session{}, unknown(id)
	}
	e.keepSession(s, gen)
	return s, nil
}

// SetAttr implements server.Engine.
func (e *Engine) SetAttr(ctx context.Context, id, key, value string) error {
	return e.setAttr(ctx, id, key, value, true)
}

// setAttr sets an attribute; index false leaves the user index alone (a
// shard's copy of a session, whose home indexes it: shard.go).
func (e *Engine) setAttr(ctx context.Context, id, key, value string, index bool) error {
	n, err := e.execInt(ctx, scriptSetAttr, id, key, value, e.node)
	if err == nil && n < 0 {
		return unknown(id)
	}
	if err == nil && n > 0 {
		e.setAttrLocal(id, key, value)
	}
	if err == nil && key == server.AttrUser && index {
		err = e.indexUser(ctx, id, value) // api.go
	}
	return err
}

// RemoveSession implements server.Engine.
func (e *Engine) RemoveSession(ctx context.Context, id string) (bool, error) {
	return e.removeAs(ctx, id, server.WakeRemoved)
}

// expireSession removes a session as the sweep does when it expires: its
// watchers, in every process, are woken with WakeExpired (shard.go).
func (e *Engine) expireSession(ctx context.Context, id string) (bool, error) {
	return e.removeAs(ctx, id, server.WakeExpired)
}

// removeAs removes a session and wakes its watchers, here and (by the ctl
// notice of why: "x" removed, "e" expired) in the other processes, with
// why. It reports whether the session was there.
func (e *Engine) removeAs(ctx context.Context, id string, why server.Wake) (bool, error) {
	notice := "x"
	if why == server.WakeExpired {
		notice = "e"
	}
	n, err := e.execInt(ctx, scriptRemove, id, e.node, strconv.Itoa(drainChunk), notice)
	if err != nil {
		return false, err
	}
	if n == 1 {
		e.forget(id)
		e.wake(id, why)
	}
	return n == 1, nil
}

// heartbeat is how long a process counts as alive after its last sweep:
// its connection counts go with it when it dies.
const heartbeat = 10 * time.Second

// Chunks of the scripts that read or drop a session's subscriptions: each
// call handles this many, so that its work stays bounded whatever the
// subscription limit (see scripts.go).
const (
	fetchChunk = 128  // subscriptions read per fetch call: the default limit in one call
	listChunk  = 1000 // subscriptions listed per call (one HMGET)
	drainChunk = 128  // subscriptions of removed sessions dropped per call: the default limit in one call
	sweepCalls = 20   // sweep calls per Sweep at most; the next Sweep goes on
)

// Sweep implements server.Engine. Each call of the script does a bounded
// part of the work; Sweep calls it again while work is left, up to
// sweepCalls times.
func (e *Engine) Sweep(ctx context.Context, now time.Time) ([]server.Session, error) {
	l := e.opts.Limits
	var out []server.Session
	for range sweepCalls {
		r, err := e.exec(ctx, scriptSweep, strconv.FormatInt(now.UnixMilli(), 10), e.node,
			strconv.FormatInt(l.ChannelTimeout.Milliseconds(), 10), strconv.FormatInt(heartbeat.Milliseconds(), 10),
			strconv.FormatInt(l.MaxHistoryBytes, 10), strconv.Itoa(drainChunk))
		if err != nil {
			return out, err
		}
		vals, err := r.AsStrSlice()
		if err != nil || len(vals) == 0 {
			return out, fail(fmt.Errorf("sweep: unexpected answer: %v", err))
		}
		for i := 1; i+1 < len(vals); i += 2 {
			out = append(out, server.Session{ID: vals[i], Kind: vals[i+1]})
			e.forget(vals[i])
			e.wake(vals[i], server.WakeExpired)
		}
		if vals[0] != "1" {
			break
		}
	}
	return out, nil
}

// Subscribe implements server.Engine.
func (e *Engine) Subscribe(ctx context.Context, id, pattern string) (bool, error) {
	if _, err := server.ParseChannel(pattern, true); err != nil {
		return false, err
	}
	max := e.opts.Limits.MaxSubscriptions
	n, err := e.execInt(ctx, scriptSubscribe, id, pattern, e.node, nowMS(), argBool(!server.IsWild(pattern)), strconv.Itoa(max))
	switch {
	case err != nil:
		return false, err
	case n == tooManySubscriptions:
		return false, fmt.Errorf("%w: %d per client", server.ErrTooManySubscriptions, max)
	case n < 0:
		return false, unknown(id)
	}
	if n == 1 {
		e.staleID(id) // its mirror is read again, with the new stream
		e.refresh(id) // a poll of this session held here needs the new topic
		if err := e.indexPresence(ctx, id, pattern); err != nil {
			return true, err
		}
	}
	return n == 1, nil
}

// Unsubscribe implements server.Engine.
func (e *Engine) Unsubscribe(ctx context.Context, id, pattern string) (bool, error) {
	n, err := e.execInt(ctx, scriptUnsubscribe, id, pattern, e.node)
	switch {
	case err != nil:
		return false, err
	case n < 0:
		return false, unknown(id)
	}
	if n == 1 {
		e.staleID(id)
	}
	return n == 1, nil
}

// Subscriptions implements server.Engine: listChunk patterns per call.
func (e *Engine) Subscriptions(ctx context.Context, id string) ([]string, error) {
	if ps, ok := e.mirrorPatterns(id); ok { // mirror.go
		return slices.Clone(ps), nil
	}
	var subs []string
	for from := "-"; ; {
		r, err := e.exec(ctx, scriptList, id, from, strconv.Itoa(listChunk))
		if err != nil {
			return nil, err
		}
		vals, err := r.ToArray()
		if err != nil || len(vals) == 0 {
			return nil, fail(fmt.Errorf("subscriptions: unexpected answer: %v", err))
		}
		if n, err := vals[0].AsInt64(); err == nil && n < 0 {
			return nil, unknown(id)
		}
		next, _ := vals[0].ToString()
		for _, v := range vals[1:] {
			p, _ := v.ToString()
			subs = append(subs, p)
		}
		if next == "" {
			break
		}
		from = "(" + next
	}
	sort.Strings(subs)
	return subs, nil
}

// candidates returns the patterns a message on channel can match, the
// channel itself first: /a/b/c gives /a/b/c, /a/b/*, /a/b/**, /a/**.
func candidates(channel string) []string {
	segs := strings.Split(strings.TrimPrefix(channel, "/"), "/")
	out := []string{channel}
	if len(segs) > 1 {
		parent := "/" + strings.Join(segs[:len(segs)-1], "/")
		out = append(out, parent+"/*")
	}
	for i := len(segs) - 1; i >= 1; i-- {
		out = append(out, "/"+strings.Join(segs[:i], "/")+"/**")
	}
	return out
}

// Publish implements server.Engine: one script whatever the audience.
func (e *Engine) Publish(ctx context.Context, m *server.Message) (int, error) {
	segs, err := server.ParseChannel(m.Channel, false)
	if err != nil {
		return 0, err
	}
	m.Time = time.Now()
	payload := encode(m)
	l := &e.opts.Limits
	args := []string{m.Channel, payload, strconv.FormatInt(m.Time.UnixMilli(), 10), strconv.Itoa(l.HistoryFor(segs)),
		strconv.Itoa(l.QueueMaxMessages), strconv.Itoa(l.QueueMaxBytes), strconv.FormatInt(e.retain().Milliseconds(), 10),
		strconv.Itoa(l.MaxChannels), strconv.FormatInt(l.MaxHistoryBytes, 10)}
	cands := candidates(m.Channel)
	if err := e.confirmMaster(ctx); err != nil { // pubsub.go
		return 0, err
	}
	var vals []int64
	for try := 0; ; try++ {
		r, err := e.exec(ctx, scriptPublish, append(append(args, strconv.FormatUint(e.highWater.Load(), 10)), cands...)...)
		if err != nil {
			return 0, err
		}
		vals, err = r.AsIntSlice()
		if err != nil || len(vals) < 2 || len(vals)%2 != 0 {
			return 0, fail(fmt.Errorf("publish: unexpected answer: %v", err))
		}
		if vals[0] != lostNumbers {
			break
		}
		if err := e.numbersLost(ctx, try); err != nil {
			return 0, err
		}
	}
	if vals[0] == tooManyChannels {
		return 0, fmt.Errorf("%w: %d channels keep history", server.ErrTooManyChannels, l.MaxChannels)
	}
	m.Seq = uint64(vals[0])
	e.saw(m.Seq)
	e.cache.put(m.Seq, payload, m)
	e.published(m, payload, cands, vals[2:]) // mirror.go
	return int(vals[1]), nil
}

// numbersLost runs when a publish or a delivery found Redis's sequence
// below the highest number this process has seen (lostNumbers): Redis lost
// data (a replica promoted without the last writes, an older snapshot), and
// this process learnt it before its pub/sub connection was back to check
// (checkEpoch). It does that check now, sure of the loss, so that the
// sessions of the lost data start again and the sequence moves past what
// was handed out; the caller then tries once more (try counts its tries).
// Found out this way only: the first publish on such a Redis took the lost
// message's number, and moved the sequence past what the check compares.
func (e *Engine) numbersLost(ctx context.Context, try int) error {
	if try > 0 {
		return fail(errors.New("the sequence is still below the numbers this process has seen"))
	}
	return e.checkNow(ctx, true) // pubsub.go
}

// retain is how long a pattern stream is kept after its last message (and
// after its last subscriber left): no live session can still need it.
func (e *Engine) retain() time.Duration { return retainDuration }

const (
	retainDuration = 10 * time.Minute
	retainMS       = "600000" // retainDuration, for the scripts
)

// Deliver implements server.Engine.
func (e *Engine) Deliver(ctx context.Context, id string, m *server.Message) error {
	m.Time = time.Now()
	if err := e.confirmMaster(ctx); err != nil { // pubsub.go
		return err
	}
	var n int64
	for try := 0; ; try++ {
		var err error
		n, err = e.execInt(ctx, scriptDeliver, id, encode(m), strconv.Itoa(e.opts.Limits.QueueMaxMessages), e.node,
			strconv.FormatUint(e.highWater.Load(), 10))
		switch {
		case err != nil:
			return err
		case n == lostNumbers:
			if err := e.numbersLost(ctx, try); err != nil {
				return err
			}
			continue
		case n < 0:
			return unknown(id)
		}
		break
	}
	m.Seq = uint64(n)
	e.saw(m.Seq)
	e.staleID(id) // the Redis fetch reads the session's own queue
	e.wake(id, server.WakeMessages)
	return nil
}

// Fetch implements server.Engine: scriptFetch reads fetchChunk
// subscriptions per call (of those that may have news), the chunks are
// merged here (the oldest max after the committed cursor), then
// scriptMark records how far each stream was answered, or, when there was
// nothing, the session's new watermark. Each call is atomic, not the
// whole: a subscription added meanwhile is fetched by the next poll, which
// its notice wakes.
func (e *Engine) Fetch(ctx context.Context, id string, max int) (server.Batch, error) {
	if max <= 0 {
		max = 1 << 20
	}
	if b, ok, err := e.mirrorFetch(ctx, id, max); ok || err != nil { // mirror.go
		return b, err
	}
	var (
		b       server.Batch
		got     = map[uint64]string{} // seq -> payload
		answers []streamOffset
		bound   uint64 // the chunks after this need nothing past it
		mode    string // "" for the first call, then the order it chose
		from    string
		now     string // the sequence when the first call ran
	)
	for {
		r, err := e.exec(ctx, scriptFetch, id, strconv.Itoa(max), mode, from, strconv.Itoa(fetchChunk), strconv.FormatUint(bound, 10), e.node)
		if err != nil {
			return server.Batch{}, err
		}
		vals, err := r.ToArray()
		if err != nil || len(vals) == 0 {
			return server.Batch{}, fail(fmt.Errorf("fetch: unexpected answer: %v", err))
		}
		head, _ := vals[0].AsInt64()
		if head < 0 || len(vals) < 5 {
			return server.Batch{}, unknown(id)
		}
		if uint64(head) > b.Cursor {
			b.Cursor = uint64(head)
		}
		dropped, _ := vals[1].AsInt64()
		b.Dropped += int(dropped)
		next, _ := vals[2].ToString()
		if mode == "" {
			mode, _ = vals[3].ToString()
			now, _ = vals[4].ToString()
		}
		for i := 5; i+3 < len(vals); i += 4 {
			seq, err1 := vals[i].AsInt64()
			payload, err2 := vals[i+1].ToString()
			pattern, err3 := vals[i+2].ToString()
			off, err4 := vals[i+3].AsInt64()
			if err := errors.Join(err1, err2, err3, err4); err != nil {
				return server.Batch{}, fail(fmt.Errorf("fetch: bad entry: %v", err))
			}
			if _, ok := got[uint64(seq)]; !ok || payload != "" {
				got[uint64(seq)] = payload
			}
			if pattern != "" {
				answers = append(answers, streamOffset{uint64(seq), pattern, off})
			}
		}
		if next == "" {
			break
		}
		from = next
		if len(got) >= max {
			bound = oldest(got, max)
		}
	}
	seqs := make([]uint64, 0, len(got))
	for seq := range got {
		if seq > b.Cursor {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	if len(seqs) > max {
		seqs = seqs[:max]
	}
	for _, seq := range seqs {
		b.Cursor = seq
		m, err := e.cache.get(seq, got[seq])
		if err != nil {
			continue // not ours to send: skip what does not decode
		}
		b.Messages = append(b.Messages, m)
	}
	e.saw(b.Cursor)
	watermark := ""
	if len(answers) == 0 {
		watermark = now // no stream of the session has anything after the cursor up to now
	}
	if err := e.mark(ctx, id, answers, b.Cursor, watermark); err != nil {
		return server.Batch{}, err
	}
	return b, nil
}

// streamOffset is one entry a fetch read from a subscription's stream.
type streamOffset struct {
	seq     uint64
	pattern string
	off     int64
}

// oldest drops from got all but its max oldest entries and returns the
// newest seq kept.
func oldest(got map[uint64]string, max int) uint64 {
	seqs := slices.Sorted(maps.Keys(got))
	for _, seq := range seqs[max:] {
		delete(got, seq)
	}
	return seqs[max-1]
}

// mark records, per stream, the highest offset of the entries answered
// (those up to cursor), and the session's watermark unless it is "".
func (e *Engine) mark(ctx context.Context, id string, answers []streamOffset, cursor uint64, watermark string) error {
	high := map[string]int64{}
	for _, a := range answers {
		if a.seq <= cursor && a.off > high[a.pattern] {
			high[a.pattern] = a.off
		}
	}
	if len(high) == 0 && watermark == "" {
		return nil
	}
	args := []string{id, watermark}
	for p, off := range high {
		args = append(args, p, strconv.FormatInt(off, 10))
	}
	_, err := e.exec(ctx, scriptMark, args...)
	return err
}

// Commit implements server.Engine.
func (e *Engine) Commit(ctx context.Context, id string, cursor uint64) error {
	if ok, err := e.mirrorCommit(ctx, id, cursor); ok || err != nil { // mirror.go
		return err
	}
	n, err := e.execInt(ctx, scriptCommit, id, strconv.FormatUint(cursor, 10))
	if err == nil && n < 0 {
		return unknown(id)
	}
	return err
}

// NotifyPoll implements server.Engine: one notice on the ctl topic, unless
// this process mirrors the session (then no other holds a poll of it).
// Until it is heard back, a poll's notice from another process is older
// than this poll and does not release it (notices.go).
func (e *Engine) NotifyPoll(ctx context.Context, id string) error {
	e.wake(id, server.WakeReplaced)
	if e.owns(id) {
		return nil
	}
	e.expectEcho(id)
	err := e.notice(ctx, "r", id)
	if err != nil {
		e.heardEcho(id)
	}
	return err
}

// History implements server.Engine: historyChunk entries per command, so
// that a long history of large messages never makes one long command.
func (e *Engine) History(ctx context.Context, channel string, after uint64) ([]*server.Message, error) {
	cutoff, err := e.expireHistory(ctx, channel) // history_ttl.go
	if err != nil {
		return nil, err
	}
	var out []*server.Message
	for {
		cctx, cancel := e.call(ctx)
		entries, err := e.client.Do(cctx, e.client.B().Xrange().Key(e.p+"h:"+channel).
			Start("("+strconv.FormatUint(after, 10)+"-0").End("+").Count(historyChunk).Build()).AsXRange()
		cancel()
		if err != nil {
			return nil, fail(err)
		}
		for _, en := range entries {
			seq, _ := strconv.ParseUint(strings.TrimSuffix(en.ID, "-0"), 10, 64)
			after = seq
			if m, err := e.cache.get(seq, en.FieldValues["m"]); err == nil && !m.Time.Before(cutoff) {
				out = append(out, m)
			}
		}
		if len(entries) < historyChunk {
			if out == nil {
				out = []*server.Message{}
			}
			return out, nil
		}
	}
}

// historyChunk is how many history entries one command reads.
const historyChunk = 100

// Channels implements server.Engine: listChunk names per command, from
// the first with the prefix, so that no command grows with the channels.
func (e *Engine) Channels(ctx context.Context, prefix string) ([]string, error) {
	out := []string{}
	from := "-"
	if prefix != "" {
		from = "[" + prefix
	}
	for {
		cctx, cancel := e.call(ctx)
		page, err := e.client.Do(cctx, e.client.B().Zrangebylex().Key(e.p+"chl").Min(from).Max("+").
			Limit(0, listChunk).Build()).AsStrSlice()
		cancel()
		if err != nil {
			return nil, fail(err)
		}
		for _, n := range page {
			if !strings.HasPrefix(n, prefix) {
				return out, nil
			}
			out = append(out, n)
		}
		if len(page) < listChunk {
			return out, nil
		}
		from = "(" + page[len(page)-1]
	}
}

// Audience implements server.Engine. A client subscribed through two
// patterns that both match the channel counts twice.
func (e *Engine) Audience(ctx context.Context, channel string) (map[string]int, error) {
	if _, err := server.ParseChannel(channel, false); err != nil {
		return nil, err
	}
	r, err := e.exec(ctx, scriptAudience, candidates(channel)...)
	if err != nil {
		return nil, err
	}
	kv, err := r.AsStrSlice()
	if err != nil {
		return nil, fail(err)
	}
	out := map[string]int{}
	for i := 0; i+1 < len(kv); i += 2 {
		if n, _ := strconv.Atoi(kv[i+1]); n > 0 {
			out[kv[i]] += n
		}
	}
	return out, nil
}

// Stats implements server.Engine.
func (e *Engine) Stats(ctx context.Context) (server.EngineStats, error) {
	st, _, err := e.stats(ctx)
	return st, err
}

// stats is Stats, and the copies of sessions of other shards among the
// clients, by kind (c:KIND of the stats hash: shard.go).
func (e *Engine) stats(ctx context.Context) (server.EngineStats, map[string]int, error) {
	cctx, cancel := e.call(ctx)
	defer cancel()
	res := e.client.DoMulti(cctx,
		e.client.B().Zcard().Key(e.p+"sessions").Build(),
		e.client.B().Zcard().Key(e.p+"ch").Build(),
		e.client.B().Hgetall().Key(e.p+"stats").Build(),
		e.client.B().Get().Key(e.p+"hbytes").Build())
	clients, err := res[0].AsInt64()
	if err != nil {
		return server.EngineStats{}, nil, fail(err)
	}
	channels, err := res[1].AsInt64()
	if err != nil {
		return server.EngineStats{}, nil, fail(err)
	}
	counts, err := res[2].AsStrMap()
	if err != nil {
		return server.EngineStats{}, nil, fail(err)
	}
	st := server.EngineStats{Clients: int(clients), Channels: int(channels), ClientsByKind: map[string]int{}}
	if b, err := res[3].AsInt64(); err == nil {
		st.HistoryBytes = b
	} else if !rueidis.IsRedisNil(err) {
		return server.EngineStats{}, nil, fail(err)
	}
	for k, v := range counts {
		n, _ := strconv.Atoi(v)
		switch kind, ok := strings.CutPrefix(k, "k:"); {
		case ok && n > 0:
			st.ClientsByKind[kind] = n
		case k == "subs":
			st.Subscriptions = n
		case k == "trimmed":
			st.HistoryTrimmed = uint64(n)
		}
	}
	return st, copyCounts(counts), nil // shard.go
}

// Close stops listening and closes the connections. Safe to call twice.
func (e *Engine) Close() error {
	e.closed.Do(func() {
		close(e.done)
		e.cancelFn()
		e.mu.Lock()
		sub := e.sub
		e.mu.Unlock()
		if sub != nil {
			sub.Close() // not under e.mu: its reader may be waiting for it
		}
		e.wg.Wait()
		if e.opts.shared == nil { // else the Sharded's, which closes it
			e.client.Close()
		}
	})
	return nil
}

// saw records a sequence number this process has seen.
func (e *Engine) saw(seq uint64) {
	for {
		hw := e.highWater.Load()
		if seq <= hw || e.highWater.CompareAndSwap(hw, seq) {
			return
		}
	}
}

// Prefix returns the key prefix, for a second engine on the same data
// (with Cluster, the prefix with its hash tag).
func (e *Engine) Prefix() string { return e.p }
