package redis

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stardust-go/stardust/server"
)

// Mirrors: Redis work per delivery near zero (docs/development.md, "How a
// message reaches a held client", point 4).
//
// For each session this process watches, it keeps a mirror: the session,
// its subscriptions with their stream positions, its cursor, and the
// messages queued for it after the cursor. The queue is filled by the
// pub/sub messages this process receives anyway (each carries its sequence
// number, its offset in the pattern's stream and its payload), so that a
// fetch is answered from memory and a commit moves the cursor in memory,
// without a Redis command. The flusher (flush.go) writes the cursors of
// all mirrored sessions to one hash per process, P cur:NODE, in one HSET
// per interval, and folds a session's cursor into its own hash when the
// mirror ends: its watch ended a while ago, another process started a poll
// of it (and waits for the fold before reading it), or the mirror missed
// something.
//
// A mirror is exact only while it has seen every message of its streams: a
// pub/sub message whose offset is not the next one of its stream (a gap), a
// new pub/sub connection, a change of subscriptions, a message delivered
// to the session alone, more queued in a stream than its bounds keep (then
// Redis may have dropped some, which the Redis fetch reports exactly), or
// Redis losing data make it stale: it is folded, the Redis fetch answers
// the next poll, and the one after loads a new mirror.

const (
	// mirrorLimit bounds the entries a load reads per stream: a session
	// with more waiting is served by the Redis fetch until it caught up.
	mirrorLimit = 256
	// mirrorGrace is how long a mirror at least outlives its last watch:
	// a client polls again at once, or, on a busy site, once its process
	// got to it (15 s after its answer with 100,000 clients on two cores,
	// BENCHMARKS.md). A mirror outlives it up to its session's timeout
	// (graceOf): a client that polls again within it never costs a fold
	// and a load, and one that left costs none either, as the session's
	// expiry ("e" notice) forgets its mirror unwritten; unless no watch
	// here needs its channels' topics for topicGrace, when the janitor
	// drops them and the mirror is folded (pubsub.go).
	mirrorGrace = 10 * time.Second
	// mirrorFetches: a session is mirrored once it polled here twice in a
	// row (no poll of it started elsewhere meanwhile), or once one watch
	// of it fetched this many times (a WebSocket, an SSE stream; a long
	// poll fetches once or twice). Polls spread round robin over
	// processes never are: each would cost a load here and a fold in the
	// process before, more than the Redis fetch they save.
	mirrorFetches = 3
	// feedRing is how many recent pub/sub messages (of all topics) are
	// kept, for a load that raced with them: one that raced with more is
	// refused (the Redis fetch answers, the next fetch loads again).
	feedRing = 256
	// aheadWait bounds how long a fetch waits for pub/sub to bring what
	// came before a message this process published (see published):
	// Redis sent it before the publish's answer, so it is only late by
	// scheduling; past the bound the Redis fetch answers.
	aheadWait = 100 * time.Millisecond
)

// mirrorSet holds the mirrors and the topics' recent messages. Its lock is
// never held together with Engine.mu.
type mirrorSet struct {
	mu      sync.Mutex
	gen     uint64 // pub/sub connections so far: a load across two is refused
	byID    map[string]*mirror
	feeds   map[string]*feed
	ring    [feedRing]fent             // the newest pub/sub messages, oldest overwritten
	next    int                        // where the next one goes in ring
	waits   map[string][]chan struct{} // by session id: handovers awaited ("f" notices)
	skip    map[string]bool            // the next fetch reads Redis (a load was refused)
	polls   map[string]streak          // watches started here in a row, by session id
	heard   uint64                     // the highest sequence number pub/sub brought (arrive)
	heardCh chan struct{}              // closed by the next arrive; made when a fetch waits for one
	loads   map[string][]*loading      // by session id: the loads in progress (load)
	qmax    int
	qbytes  int
	// flushMu: the flusher's HSET and the folds never cross (a fold's
	// HDEL must not come before an older HSET of the same session).
	flushMu sync.RWMutex

	loadRead func(id string) // tests (export_test.go): runs between a load's read and the mirror's start
	// arriving, when set (tests: export_test.go), runs first in each
	// arrive, on the pub/sub connection's goroutine.
	arriving atomic.Pointer[func(pattern string)]
}

// graceOf is how long m outlives its last watch: its session's timeout,
// at least mirrorGrace.
func graceOf(m *mirror) time.Duration { return max(mirrorGrace, m.sess.Timeout) }

// streak counts a session's watches started here since a poll of it
// started elsewhere (an "r" notice).
type streak struct {
	n       int
	fetches int       // by the current watch, while not mirrored
	at      time.Time // the last watch's start, or its end once it ended
	// held: a watch of the session is on here. A streak is never forgotten
	// while held: a long poll held longer than mirrorGrace (the default
	// poll_timeout is 30 s) would otherwise start every poll anew, and an
	// idle client would never be mirrored.
	held bool
}

// loading is one load in progress: what happened to its session since
// before its read of Redis, which the read may not show. A mirror read
// before a subscription was added would lack that stream and pass its
// messages by (TestLoadRacing: CometD's client lost them).
type loading struct {
	stale bool // its subscriptions changed, a message was delivered to it alone, a poll started elsewhere, or it was removed
	attrs bool // an attribute was set elsewhere
}

// spoilLoads marks the loads in progress of a session stale (s.mu held).
func (s *mirrorSet) spoilLoads(id string) {
	for _, l := range s.loads[id] {
		l.stale = true
	}
}

// pollHere counts a watch of the session starting here and reports
// whether it should load a mirror.
func (e *Engine) pollHere(id string) bool {
	s := &e.mir
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.polls[id]
	st.n++
	st.fetches = 0
	st.at = time.Now()
	st.held = true
	s.polls[id] = st
	return e.opts.Mirror && (e.opts.MirrorFromFirstPoll || st.n >= 2)
}

// pollElsewhere: a poll of the session started in another process.
func (s *mirrorSet) pollElsewhere(id string) { delete(s.polls, id) }

// pollEnded: a watch of the session here ended; its streak ages from now.
func (s *mirrorSet) pollEnded(id string) {
	s.mu.Lock()
	if st, ok := s.polls[id]; ok {
		st.at, st.held = time.Now(), false
		s.polls[id] = st
	}
	s.mu.Unlock()
}

// mirror is one session's copy; fields under mirrorSet.mu.
type mirror struct {
	id       string
	sess     server.Session
	sessOK   bool   // sess is current (an "a" notice clears it)
	attrGen  uint64 // "a" notices so far
	c        uint64 // the committed cursor
	subs     map[string]*msub
	patterns []string // sorted, for the watches
	queue    []qent   // after c, by sequence number
	dirty    bool     // c changed since the last flush
	stale    bool
	touched  time.Time // when Touch last reached Redis for it
	idle     time.Time // when the flusher first found it unwatched; zero while watched
	fold     sync.Mutex
}

// msub is one subscription's position.
type msub struct {
	start uint64 // the sequence number at subscribe
	seen  int64  // highest offset answered
	last  int64  // highest offset known: every entry up to it is in queue (or at or before c)
	n     int    // entries of it in queue
	bytes int
}

// qent is one queued message and the streams that carried it.
type qent struct {
	seq  uint64
	msg  *server.Message
	size int
	p    string // first stream
	off  int64
	more []pmark // further streams (wildcards), rare
	// ahead: queued by published before pub/sub brought it. Messages
	// before it may still be on their way: it is answered only once
	// pub/sub has brought it (mirrorSet.heard), so that no cursor passes
	// them.
	ahead bool
}

// carries reports whether stream p carried q.
func (q *qent) carries(p string) bool {
	return q.p == p || slices.ContainsFunc(q.more, func(x pmark) bool { return x.p == p })
}

type pmark struct {
	p   string
	off int64
}

// feed is one topic as received: its last offset and its mirrors.
type feed struct {
	last    int64 // -1: none received on this connection
	mirrors map[*mirror]struct{}
}

// fent is one pub/sub message of a topic, in mirrorSet.ring.
type fent struct {
	pattern string
	seq     uint64
	off     int64
	payload string
}

func (s *mirrorSet) init(l server.Limits) {
	s.byID, s.feeds = map[string]*mirror{}, map[string]*feed{}
	s.waits, s.skip, s.polls = map[string][]chan struct{}{}, map[string]bool{}, map[string]streak{}
	s.loads = map[string][]*loading{}
	s.qmax, s.qbytes = l.QueueMaxMessages, l.QueueMaxBytes
}

// arrive records a pub/sub message of a pattern's topic and queues it in
// the mirrors that subscribe to the pattern.
func (e *Engine) arrive(pattern, text string) {
	if f := e.mir.arriving.Load(); f != nil {
		(*f)(pattern)
	}
	seqS, rest, ok1 := strings.Cut(text, " ")
	offS, payload, ok2 := strings.Cut(rest, " ")
	seq, err1 := strconv.ParseUint(seqS, 10, 64)
	off, err2 := strconv.ParseInt(offS, 10, 64)
	s := &e.mir
	if !ok1 || !ok2 || err1 != nil || err2 != nil || off <= 0 {
		// Not ours to read (an older version's notice): nothing here can
		// trust this topic.
		s.mu.Lock()
		if f := s.feeds[pattern]; f != nil {
			for m := range f.mirrors {
				s.markStale(m)
			}
			f.last = -1
		}
		s.mu.Unlock()
		return
	}
	e.saw(seq)
	msg, derr := e.cache.get(seq, payload)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.heard = max(s.heard, seq) // one connection: every topic's messages come in sequence order
	if s.heardCh != nil {
		close(s.heardCh)
		s.heardCh = nil
	}
	f := s.feeds[pattern]
	if f == nil {
		f = &feed{last: -1, mirrors: map[*mirror]struct{}{}}
		s.feeds[pattern] = f
	}
	s.ring[s.next] = fent{pattern: pattern, seq: seq, off: off, payload: payload}
	s.next = (s.next + 1) % feedRing
	f.last = max(f.last, off)
	for m := range f.mirrors {
		if derr != nil {
			s.markStale(m)
			continue
		}
		s.add(m, pattern, seq, off, msg, len(payload))
	}
}

// published queues a message this process published in its mirrors at
// once (offs: pairs of candidate index from 1 and offset, as scriptPublish
// returns them), so that a fetch right after the publish finds it, as the
// Redis fetch would. Its pub/sub copy, later, is then known (its offset is
// not past the mirror's); a mirror that has not seen the message before
// it in the same stream (another process's, still on its way) leaves it to
// pub/sub. One before it in another stream may be on its way too: the
// message is queued ahead (qent.ahead), and a fetch answers it only once
// pub/sub caught up (awaitAhead).
func (e *Engine) published(m *server.Message, payload string, cands []string, offs []int64) {
	s := &e.mir
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i+1 < len(offs); i += 2 {
		k, off := offs[i]-1, offs[i+1]
		if k < 0 || int(k) >= len(cands) {
			continue
		}
		p := cands[k]
		f := s.feeds[p]
		if f == nil {
			continue
		}
		for mr := range f.mirrors {
			if sub := mr.subs[p]; sub != nil && off == sub.last+1 {
				s.add(mr, p, m.Seq, off, m, len(payload))
				mr.markAhead(m.Seq)
			}
		}
	}
}

// markAhead marks m's queued message seq as queued ahead of pub/sub.
func (m *mirror) markAhead(seq uint64) {
	for i := len(m.queue) - 1; i >= 0 && m.queue[i].seq >= seq; i-- {
		if m.queue[i].seq == seq {
			m.queue[i].ahead = true
		}
	}
}

// add queues one message of a stream in m, or makes m stale when it
// missed one before it or its stream may have dropped some.
func (s *mirrorSet) add(m *mirror, p string, seq uint64, off int64, msg *server.Message, size int) {
	sub := m.subs[p]
	switch {
	case sub == nil || m.stale:
		return
	case off <= sub.last:
		return // read by the load already
	case off != sub.last+1:
		s.markStale(m)
		return
	}
	sub.last = off
	if seq <= m.c || seq <= sub.start {
		return
	}
	i := len(m.queue)
	for i > 0 && m.queue[i-1].seq > seq {
		if m.queue[i-1].carries(p) {
			s.markStale(m) // a later message of this stream came first: not one stream's order
			return
		}
		i--
	}
	if i > 0 && m.queue[i-1].seq == seq {
		if m.queue[i-1].carries(p) {
			s.markStale(m) // one message at two offsets of one stream
			return
		}
		m.queue[i-1].more = append(m.queue[i-1].more, pmark{p, off})
	} else {
		m.queue = slices.Insert(m.queue, i, qent{seq: seq, msg: msg, size: size, p: p, off: off})
	}
	sub.n++
	sub.bytes += size
	if sub.n > s.qmax || sub.bytes > s.qbytes {
		s.markStale(m) // the stream may have dropped some: the Redis fetch counts them
	}
}

// catchUp queues in m what its load missed of pattern p's topic, up to
// offset last, from the ring; false if the ring no longer has it all.
func (s *mirrorSet) catchUp(e *Engine, m *mirror, p string, last int64) bool {
	var got []fent
	seen := map[int64]bool{}
	for i := range feedRing {
		fe := s.ring[(s.next+i)%feedRing] // oldest first
		if fe.pattern == p && fe.off > m.subs[p].last && fe.off <= last && !seen[fe.off] {
			seen[fe.off] = true
			got = append(got, fe)
		}
	}
	slices.SortFunc(got, func(a, b fent) int { return int(a.off - b.off) })
	if int64(len(got)) != last-m.subs[p].last {
		return false
	}
	for _, fe := range got {
		msg, err := e.cache.get(fe.seq, fe.payload)
		if err != nil {
			return false
		}
		s.add(m, p, fe.seq, fe.off, msg, len(fe.payload))
	}
	return true
}

// markStale stops m's updates; the next fetch or the flusher folds it.
func (s *mirrorSet) markStale(m *mirror) {
	if m.stale {
		return
	}
	m.stale = true
	for p := range m.subs {
		if f := s.feeds[p]; f != nil {
			delete(f.mirrors, m)
		}
	}
}

// staleID makes a session's mirror stale (its subscriptions changed, a
// message was delivered to it alone).
func (e *Engine) staleID(id string) {
	s := &e.mir
	s.mu.Lock()
	if m := s.byID[id]; m != nil {
		s.markStale(m)
	}
	s.spoilLoads(id)
	s.mu.Unlock()
}

// topicDropped: this process no longer listens to a pattern's topic, so
// the mirrors that read it can no longer be exact, nor can the loads in
// progress, which found it live when they began.
func (e *Engine) topicDropped(pattern string) {
	s := &e.mir
	s.mu.Lock()
	if f := s.feeds[pattern]; f != nil {
		for m := range f.mirrors {
			s.markStale(m)
		}
		delete(s.feeds, pattern)
	}
	for id := range s.loads { // few at a time; a topic is dropped at most every topicGrace/3
		s.spoilLoads(id)
	}
	s.mu.Unlock()
}

// forget drops a session's mirror without writing anything: the session is
// gone.
func (e *Engine) forget(id string) {
	s := &e.mir
	s.mu.Lock()
	if m := s.byID[id]; m != nil {
		s.markStale(m)
		delete(s.byID, id)
	}
	s.spoilLoads(id)
	delete(s.skip, id)
	delete(s.polls, id)
	s.mu.Unlock()
}

// resetMirrors runs when the pub/sub connection was lost or replaced:
// messages may have been missed, so every mirror is stale.
func (e *Engine) resetMirrors() {
	s := &e.mir
	s.mu.Lock()
	s.gen++
	s.feeds, s.ring = map[string]*feed{}, [feedRing]fent{}
	for _, m := range s.byID {
		s.markStale(m)
	}
	s.mu.Unlock()
}

// dropMirrors forgets every mirror without writing it: Redis lost the data
// they were read from.
func (e *Engine) dropMirrors() {
	s := &e.mir
	s.mu.Lock()
	s.gen++
	s.feeds = map[string]*feed{}
	s.byID = map[string]*mirror{}
	s.mu.Unlock()
}

// owns reports whether this process mirrors the session: then no other
// process holds a poll of it (one that starts publishes a notice, which
// ends the mirror), and NotifyPoll need not tell them.
func (e *Engine) owns(id string) bool {
	s := &e.mir
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.byID[id]
	return m != nil && !m.stale
}

// mirrorPatterns returns the subscriptions of a session's valid mirror.
func (e *Engine) mirrorPatterns(id string) ([]string, bool) {
	s := &e.mir
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.byID[id]; m != nil && !m.stale {
		return m.patterns, true
	}
	return nil, false
}

// mirrorSession answers Session from a valid mirror.
func (e *Engine) mirrorSession(id string) (server.Session, bool) {
	s := &e.mir
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.byID[id]; m != nil && !m.stale && m.sessOK {
		return m.sess, true
	}
	return server.Session{}, false
}

// attrGen returns the session's "a" notices so far, before a read of it.
func (e *Engine) attrGen(id string) (uint64, bool) {
	s := &e.mir
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.byID[id]; m != nil {
		return m.attrGen, true
	}
	return 0, false
}

// keepSession stores a session read from Redis in its mirror, unless an
// attribute changed since the read began.
func (e *Engine) keepSession(sess server.Session, gen uint64) {
	s := &e.mir
	s.mu.Lock()
	if m := s.byID[sess.ID]; m != nil && m.attrGen == gen {
		m.sess, m.sessOK = sess, true
	}
	s.mu.Unlock()
}

// attrChanged: an attribute was set elsewhere ("a" notice).
func (e *Engine) attrChanged(id string) {
	s := &e.mir
	s.mu.Lock()
	if m := s.byID[id]; m != nil {
		m.attrGen++
		m.sessOK = false
	}
	for _, l := range s.loads[id] {
		l.attrs = true
	}
	s.mu.Unlock()
}

// setAttrLocal records an attribute this process set.
func (e *Engine) setAttrLocal(id, key, value string) {
	s := &e.mir
	s.mu.Lock()
	if m := s.byID[id]; m != nil && m.sessOK {
		attrs := make(map[string]string, len(m.sess.Attrs)+1)
		for k, v := range m.sess.Attrs {
			attrs[k] = v
		}
		if value == "" {
			delete(attrs, key)
		} else {
			attrs[key] = value
		}
		m.sess.Attrs = attrs
	}
	s.mu.Unlock()
}

// errStale: the mirror cannot answer; read Redis.
var errStale = errors.New("redis engine: mirror stale")

// mirrorFetch answers a fetch from the session's mirror; ok false means
// read Redis (after folding a stale mirror, so that Redis has its cursor).
func (e *Engine) mirrorFetch(ctx context.Context, id string, max int) (b server.Batch, ok bool, err error) {
	s := &e.mir
	s.mu.Lock()
	m := s.byID[id]
	if m == nil {
		skip := s.skip[id]
		delete(s.skip, id)
		st, counted := s.polls[id]
		if counted {
			st.fetches++
			s.polls[id] = st
		}
		again := e.opts.Mirror && (e.opts.MirrorFromFirstPoll || st.n >= 2 || st.fetches >= mirrorFetches)
		s.mu.Unlock()
		if skip || !again || !e.watched(id) {
			return b, false, nil
		}
		if m, err = e.load(ctx, id); err != nil || m == nil {
			return b, false, err
		}
		s.mu.Lock()
	}
	e.awaitAhead(ctx, m, max)
	if m.stale {
		s.mu.Unlock()
		return b, false, e.foldOne(ctx, m, false)
	}
	defer s.mu.Unlock()
	b.Cursor = m.c
	n := min(max, len(m.queue))
	if n > 0 {
		b.Messages = make([]*server.Message, n)
	}
	for i, q := range m.queue[:n] {
		b.Messages[i] = q.msg
		b.Cursor = q.seq
		m.see(q.p, q.off)
		for _, x := range q.more {
			m.see(x.p, x.off)
		}
	}
	return b, true, nil
}

// awaitAhead waits, s.mu held (released meanwhile), until pub/sub has
// brought the messages among the first max of m's queue that this
// process published (qent.ahead), and with them whatever came before
// them; past aheadWait (or ctx's end) it makes m stale: the Redis fetch
// answers.
func (e *Engine) awaitAhead(ctx context.Context, m *mirror, max int) {
	s := &e.mir
	var deadline time.Time
	for !m.stale {
		var need uint64
		for _, q := range m.queue[:min(max, len(m.queue))] {
			if q.ahead && q.seq > need {
				need = q.seq
			}
		}
		if need <= s.heard {
			return
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(aheadWait)
		} else if !time.Now().Before(deadline) || ctx.Err() != nil {
			s.markStale(m)
			return
		}
		if s.heardCh == nil {
			s.heardCh = make(chan struct{})
		}
		next := s.heardCh
		s.mu.Unlock()
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-next:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		s.mu.Lock()
	}
}

func (m *mirror) see(p string, off int64) {
	if sub := m.subs[p]; sub != nil && off > sub.seen {
		sub.seen = off // written by the fold only (see mirrorLua)
	}
}

// mirrorCommit commits in the session's mirror; ok false means commit in
// Redis (after folding a stale mirror).
func (e *Engine) mirrorCommit(ctx context.Context, id string, cursor uint64) (ok bool, err error) {
	s := &e.mir
	s.mu.Lock()
	m := s.byID[id]
	if m == nil {
		s.mu.Unlock()
		return false, nil
	}
	if m.stale {
		s.mu.Unlock()
		return false, e.foldOne(ctx, m, false)
	}
	defer s.mu.Unlock()
	if cursor <= m.c {
		return true, nil
	}
	m.c, m.dirty = cursor, true
	k := 0
	for k < len(m.queue) && m.queue[k].seq <= cursor {
		q := m.queue[k]
		m.unqueue(q.p, q.size)
		for _, x := range q.more {
			m.unqueue(x.p, q.size)
		}
		k++
	}
	m.queue = slices.Delete(m.queue, 0, k)
	return true, nil
}

func (m *mirror) unqueue(p string, size int) {
	if sub := m.subs[p]; sub != nil {
		sub.n--
		sub.bytes -= size
	}
}

// touchPart: a mirrored session is touched in Redis when a part this
// large of its timeout has passed since the last time, not at every sweep.
// Its expiry in Redis stays at least (1 - 1/touchPart) of its timeout away
// while this process holds it; should the process die, the session
// expires up to timeout/touchPart earlier than with a touch per sweep.
const touchPart = 4

// untouched sorts Touch's ids: out, to touch by script (not mirrored);
// due, score and id pairs of the mirrored sessions to touch now (one
// ZADD XX: the member must still be there); done records, after the
// writes succeeded, that they were touched.
func (e *Engine) untouched(ids []string) (out, due []string, done func()) {
	s := &e.mir
	now := time.Now()
	var ms []*mirror
	s.mu.Lock()
	for _, id := range ids {
		m := s.byID[id]
		if m == nil || m.stale || !m.sessOK {
			out = append(out, id)
			continue
		}
		if m.sess.Timeout <= 0 || now.Sub(m.touched) < m.sess.Timeout/touchPart {
			continue
		}
		due = append(due, strconv.FormatInt(now.Add(m.sess.Timeout).UnixMilli(), 10), id)
		ms = append(ms, m)
	}
	s.mu.Unlock()
	return out, due, func() {
		s.mu.Lock()
		for _, m := range ms {
			m.touched = now
		}
		s.mu.Unlock()
	}
}

// watched reports whether a watch of the session runs in this process.
func (e *Engine) watched(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.watchers[id]) > 0
}
