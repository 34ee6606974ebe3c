package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/stardust-go/stardust/server"
)

// topicGrace is how long a pattern topic stays subscribed after its last
// watch ended: a client polls again at once, and would otherwise cost a
// SUBSCRIBE and an UNSUBSCRIBE per poll.
const topicGrace = 30 * time.Second

// listen keeps one dedicated pub/sub connection up: the ctl topic and every
// pattern topic that watches need. After each reconnection it subscribes
// them all again and wakes every watch, so that held polls look again at
// what they may have missed; when the epoch changed (Redis came back
// empty), caches are dropped and every watched session is checked again.
func (e *Engine) listen(ctx context.Context) {
	defer e.wg.Done()
	backoff := 50 * time.Millisecond
	first := true
	for {
		lost, err := e.connectPubSub(ctx)
		if err == nil {
			switch {
			case e.moving.Swap(false) && !e.down.Load():
				e.opts.Log.Info("redis engine: listening on the slot's new master")
			case !first || e.down.Load():
				e.opts.Log.Info("redis engine: connected to Redis again")
			}
			e.down.Store(false)
			e.resetMirrors()  // what came between two connections was missed
			e.checkEpoch(ctx) // before New returns: the first run id and epoch are known
			if first {
				close(e.subReady)
				first = false
			}
			e.wakeAll(server.WakeMessages)
			backoff = 50 * time.Millisecond
			if err = e.awaitLoss(ctx, lost); ctx.Err() != nil {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		default:
		}
		e.resetMirrors()
		e.forgetEchoes()
		e.unsure.Store(true) // the next connection may reach another Redis
		// Not an outage: the connection closed on its way to the slot's
		// new master (followMaster), or found rueidis still at the old one.
		moving := e.moving.Load() && (isMoved(err) || isClusterDown(err) || errors.Is(err, rueidis.ErrClosing))
		if !moving {
			e.moving.Store(false)
			if !e.down.Swap(true) {
				e.opts.Log.WithError(err).Warn("redis engine: Redis unavailable; retrying")
			}
		}
		e.mu.Lock()
		for _, t := range e.topics {
			t.live = false
		}
		e.mu.Unlock()
		// Held polls end at their hold as usual; the next ones fail fast
		// with retry advice until Redis is back.
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if gate := e.reconnectGate.Load(); gate != nil {
			<-*gate
		}
		backoff = min(2*backoff, reconnectMax)
	}
}

// awaitLoss returns the error that ends the pub/sub connection (or nil
// once ctx is done). On a Cluster it also checks, every clusterRefresh,
// that the connection's node still serves the site's slot (followMaster).
func (e *Engine) awaitLoss(ctx context.Context, lost <-chan error) error {
	var tick <-chan time.Time
	if len(e.opts.Cluster) > 0 {
		t := time.NewTicker(clusterRefresh)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case err := <-lost:
			return err
		case <-ctx.Done():
			return nil
		case <-tick:
			e.followMaster(ctx)
		}
	}
}

// followMaster ends the pub/sub connection when its node no longer serves
// the site's slot: a replica took over while the old master lives on (a
// manual CLUSTER FAILOVER) or the slot moved, or it is cut off from the
// other masters (it answers CLUSTERDOWN, not MOVED, while their side
// promotes its replica). Its death ends
// the connection by itself; this one does not, and it would still bring
// every message (a Cluster delivers a PUBLISH on all nodes), but the
// reconnection must run on the new master: it binds the connection there
// and checks whether that master lost writes (checkEpoch). A read of the
// site's key on the connection tells: any node but the slot's master
// answers MOVED.
func (e *Engine) followMaster(ctx context.Context) {
	e.mu.Lock()
	sub := e.sub
	e.mu.Unlock()
	if sub == nil {
		return
	}
	cctx, cancel := e.call(ctx)
	defer cancel()
	if err := e.readSiteKey(cctx, sub); isMoved(err) || isClusterDown(err) {
		e.opts.Log.WithError(err).Info("redis engine: the site's slot has another master, or this one is cut off from the Cluster; following the Cluster")
		e.moving.Store(true)
		sub.Close() // listen connects again, to the new master
	}
}

// readSiteKey reads a key of the site on the dedicated connection c: on a
// Cluster, its first command binds c to the node of the site's slot, and
// any node but that slot's master answers MOVED (connectPubSub,
// followMaster).
func (e *Engine) readSiteKey(ctx context.Context, c rueidis.DedicatedClient) error {
	return c.Do(ctx, c.B().Exists().Key(e.p+"epoch").Build()).Error()
}

// isMoved reports whether err is Redis Cluster's MOVED: the node asked
// does not serve the key's slot.
func isMoved(err error) bool {
	var re *rueidis.RedisError
	if !errors.As(err, &re) {
		return false
	}
	_, moved := re.IsMoved()
	return moved
}

// isClusterDown reports whether err is Redis Cluster's CLUSTERDOWN: the
// node asked (a master cut off from the other masters, most likely) serves
// no command now; the command did not run.
func isClusterDown(err error) bool {
	var re *rueidis.RedisError
	return errors.As(err, &re) && re.IsClusterDown()
}

// connectPubSub opens the pub/sub connection and subscribes to ctl and to
// every topic in use. lost yields the error that ends the connection.
func (e *Engine) connectPubSub(ctx context.Context) (lost <-chan error, err error) {
	c, cancel := e.client.Dedicate()
	wait := c.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: e.onMessage})
	e.mu.Lock()
	old := e.sub
	e.sub = c
	names := []string{e.p + "ctl"}
	for p := range e.topics {
		names = append(names, e.p+"n:"+p)
	}
	e.mu.Unlock()
	if old != nil {
		old.Close()
	}
	cctx, ccancel := e.call(ctx)
	defer ccancel()
	if len(e.opts.Cluster) > 0 {
		// A Cluster delivers a PUBLISH on every node, but this connection
		// must be on the master of the site's slot (cluster.go): the first
		// command of a dedicated connection binds it to its key's slot.
		if err := e.readSiteKey(cctx, c); err != nil {
			cancel()
			return nil, err
		}
	}
	if err := c.Do(cctx, c.B().Subscribe().Channel(names...).Build()).Error(); err != nil {
		cancel()
		return nil, err
	}
	e.mu.Lock()
	for _, t := range e.topics {
		t.live = true
	}
	e.mu.Unlock()
	out := make(chan error, 1)
	go func() {
		defer cancel()
		err, ok := <-wait
		if !ok || err == nil {
			err = rueidis.ErrClosing
		}
		out <- err
	}()
	return out, nil
}

// checkEpoch runs on every (re)connection and notices a Redis that lost
// data: the epoch key changed (Redis came back empty or was flushed), or
// the server is another one or restarted (its run_id changed) and the
// sequence is below the highest this process has seen (a restart from an
// older snapshot, a replica promoted with lag). Then the decoded messages
// cached are dropped, a new epoch makes every older session unknown to
// Fetch (its client starts again, as after an empty Redis), the sequence
// moves past what was handed out, and every watched session is woken to
// find out.
func (e *Engine) checkEpoch(ctx context.Context) {
	cctx, cancel := e.call(ctx)
	defer cancel()
	// The other connections may find out that Redis went away only now:
	// try again until the timeout.
	for {
		lost, err := e.lostData(cctx, false)
		if err == nil {
			if lost {
				e.wakeAll(server.WakeMessages)
			}
			return
		}
		select {
		case <-cctx.Done():
			e.opts.Log.WithError(err).Warn("redis engine: cannot tell whether Redis lost data")
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// lostData is one try of checkEpoch: it reports whether Redis lost data,
// and then has dropped the cache and renewed the epoch. A server with
// another run_id than the last seen (a restart, a failover) lost data when
// its sequence began below the highest number this process has seen
// (scriptMaster's base: by then another process may have published past
// it). sure (a script found the sequence below what this process has
// seen: numbersLost) needs no change of run_id to count a sequence that
// went back as a loss.
func (e *Engine) lostData(ctx context.Context, sure bool) (bool, error) {
	e.unsure.Store(false) // a failure meanwhile sets it again
	epoch, seq, base, runID, err := e.readEpoch(ctx)
	if err != nil {
		e.unsure.Store(true)
		return false, err
	}
	e.mu.Lock()
	emptied := e.epoch != "" && e.epoch != epoch
	restarted := e.runID != "" && e.runID != runID
	e.mu.Unlock()
	hw := e.highWater.Load()
	lost := emptied || restarted && base < hw || sure && seq < hw
	if lost {
		e.cache.init(e.cache.size)
		e.dropMirrors()
		// A new epoch if Redis went back with the epoch key (or lost it);
		// one that changed was renewed already, by the first process
		// that found out.
		old := epoch
		if emptied {
			old = ""
		}
		r := e.script(ctx, scriptRenew, old, newID(), strconv.FormatUint(hw, 10))
		if epoch, err = r.ToString(); err != nil {
			e.unsure.Store(true)
			return false, err
		}
		e.opts.Log.WithField("sequence", seq).WithField("began", base).WithField("seen", hw).
			Warn("redis engine: Redis lost data; its clients start again")
	}
	e.mu.Lock()
	e.epoch, e.runID = epoch, runID
	e.mu.Unlock()
	return lost, nil
}

// readEpoch reads the epoch key, the sequence, the server's run_id and the
// sequence that server began with (scriptMaster). The script names the
// prefix in KEYS: on a Cluster it runs on the master of the site's slot.
func (e *Engine) readEpoch(ctx context.Context) (epoch string, seq, base uint64, runID string, err error) {
	vals, err := e.script(ctx, scriptMaster).ToArray()
	if err != nil {
		return "", 0, 0, "", err
	}
	if len(vals) != 4 {
		return "", 0, 0, "", fmt.Errorf("master: %d values", len(vals))
	}
	if epoch, err = vals[0].ToString(); err != nil && !rueidis.IsRedisNil(err) {
		return "", 0, 0, "", err
	}
	s, _ := vals[1].ToString()
	b, _ := vals[3].ToString()
	if seq, err = strconv.ParseUint(s, 10, 64); err != nil {
		return "", 0, 0, "", fmt.Errorf("master: sequence %q", s)
	}
	if base, err = strconv.ParseUint(b, 10, 64); err != nil {
		return "", 0, 0, "", fmt.Errorf("master: base %q", b)
	}
	runID, _ = vals[2].ToString()
	return epoch, seq, base, runID, nil
}

// confirmMaster checks Redis for lost data before a number is handed out,
// when this process may be on another Redis than it last checked
// (unsure): so that this process's first number there comes after the
// record of where that Redis's sequence began, which the other processes'
// checks compare with what they have seen.
func (e *Engine) confirmMaster(ctx context.Context) error {
	if !e.unsure.Load() {
		return nil
	}
	return e.checkNow(ctx, false)
}

// checkNow is one try of the lost-data check (lostData), within one call's
// timeout, for a caller about to hand out a number (confirmMaster,
// numbersLost): when Redis lost data every watch is woken to find out.
func (e *Engine) checkNow(ctx context.Context, sure bool) error {
	cctx, cancel := e.call(ctx)
	defer cancel()
	lost, err := e.lostData(cctx, sure)
	if err != nil {
		return fail(err)
	}
	if lost {
		e.wakeAll(server.WakeMessages)
	}
	return nil
}

// onMessage runs on the pub/sub connection's goroutine: it only looks up
// watches and calls their callbacks, which never block.
func (e *Engine) onMessage(m rueidis.PubSubMessage) {
	if m.Channel == e.p+"ctl" {
		if f := e.hearing.Load(); f != nil {
			(*f)(m.Message)
		}
		kind, rest, _ := strings.Cut(m.Message, " ")
		node, id, _ := strings.Cut(rest, " ")
		switch kind {
		case "r":
			if node == e.node {
				e.heardEcho(id)
				break
			}
			e.handover(id) // flush.go
			// A poll that began elsewhere before this process's newest
			// one (its own notice not yet heard back) releases none here.
			if !e.echoPending(id) {
				e.wake(id, server.WakeReplaced)
			}
		case "x":
			if node != e.node {
				e.forget(id)
				e.wake(id, server.WakeRemoved)
			}
		case "e":
			if node != e.node {
				e.forget(id)
				e.wake(id, server.WakeExpired)
			}
		case "d":
			if node != e.node {
				e.staleID(id) // now: before a message of a new stream comes
				go e.refresh(id)
			}
		case "a":
			if node != e.node {
				e.attrChanged(id)
			}
		case "f":
			e.folded(id)
		}
		return
	}
	pattern := strings.TrimPrefix(m.Channel, e.p+"n:")
	e.arrive(pattern, m.Message) // mirror.go
	e.mu.Lock()
	var hit []*watch
	if t := e.topics[pattern]; t != nil {
		hit = make([]*watch, 0, len(t.watches))
		for w := range t.watches {
			hit = append(hit, w)
		}
	}
	e.mu.Unlock()
	for _, w := range hit {
		w.notify(server.WakeMessages)
	}
}

// wake calls the callbacks of this process's watches of a session.
func (e *Engine) wake(id string, why server.Wake) {
	e.mu.Lock()
	ws := append([]*watch(nil), e.watchers[id]...)
	e.mu.Unlock()
	for _, w := range ws {
		w.notify(why)
	}
}

func (e *Engine) wakeAll(why server.Wake) {
	e.mu.Lock()
	var all []*watch
	for _, ws := range e.watchers {
		all = append(all, ws...)
	}
	e.mu.Unlock()
	for _, w := range all {
		w.notify(why)
	}
}

// Watch implements server.Engine: it learns the session's patterns, makes
// sure their topics are subscribed (confirmed by Redis) and only then
// returns, so that no message published afterwards goes unnoticed.
func (e *Engine) Watch(id string, notify func(server.Wake)) (stop func()) {
	w := &watch{id: id, notify: notify}
	e.mu.Lock()
	e.watchers[id] = append(e.watchers[id], w)
	e.mu.Unlock()
	err := e.listenFor(w)
	if err == nil && !e.owns(id) && e.pollHere(id) {
		ctx, cancel := e.call(context.Background())
		_, err = e.load(ctx, id) // mirror.go: its topics are live
		cancel()
	}
	if err != nil {
		if errors.Is(err, server.ErrUnknownClient) {
			notify(server.WakeExpired)
		}
		// Otherwise Redis is away: the poll's fetch fails and says so.
	}
	return func() {
		e.mu.Lock()
		if w.stopped {
			e.mu.Unlock()
			return
		}
		w.stopped = true
		dropFrom(e.watchers, id, w) // flush.go
		e.release(w, w.patterns)
		e.mu.Unlock()
		e.mir.pollEnded(id) // mirror.go
	}
}

// listenFor gives w the session's current patterns and subscribes to
// their topics.
func (e *Engine) listenFor(w *watch) error {
	patterns, mirrored := e.mirrorPatterns(w.id) // mirror.go: no Redis, no timer per poll
	if !mirrored {
		ctx, cancel := e.call(context.Background())
		var err error
		patterns, err = e.patterns(ctx, w.id)
		cancel()
		if err != nil {
			return err
		}
	}
	var need []string
	e.mu.Lock()
	if w.stopped {
		e.mu.Unlock()
		return nil
	}
	old := w.patterns
	w.patterns = patterns
	for _, p := range patterns {
		t := e.topics[p]
		if t == nil {
			t = &topic{watches: map[*watch]struct{}{}}
			e.topics[p] = t
		}
		t.refs++
		t.watches[w] = struct{}{}
		if !t.live {
			need = append(need, e.p+"n:"+p)
		}
	}
	e.release(w, old)
	sub := e.sub
	e.mu.Unlock()
	if len(need) == 0 || sub == nil {
		return nil
	}
	ctx, cancel := e.call(context.Background())
	defer cancel()
	for chunk := range slices.Chunk(need, listChunk) { // one command per chunk: each stays short in Redis
		if err := sub.Do(ctx, sub.B().Subscribe().Channel(chunk...).Build()).Error(); err != nil {
			return fail(err)
		}
	}
	e.mu.Lock()
	for _, name := range need {
		if t := e.topics[strings.TrimPrefix(name, e.p+"n:")]; t != nil && e.sub == sub {
			t.live = true
		}
	}
	e.mu.Unlock()
	return nil
}

// patterns returns a session's subscriptions for its watches: the list
// read last time while their version has not changed (every poll watches
// its session, and a client may have many subscriptions), or a new one.
func (e *Engine) patterns(ctx context.Context, id string) ([]string, error) {
	folded := e.expectFold(id) // flush.go
	defer e.unexpectFold(id, folded)
	vo, err := e.client.Do(ctx, e.client.B().Hmget().Key(e.p+"s:"+id).Field("v", "o").Build()).ToArray()
	if err != nil {
		return nil, fail(err)
	}
	v, err := vo[0].ToString()
	if rueidis.IsRedisNil(err) {
		return nil, unknown(id)
	} else if err != nil {
		return nil, fail(err)
	}
	if owner, err := vo[1].ToString(); err == nil && owner != e.node {
		// Another process mirrors it: read its cursor once it folded it.
		e.awaitFold(ctx, owner, folded)
	}
	now := time.Now()
	e.mu.Lock()
	c, ok := e.lists[id]
	if ok && c.version == v {
		c.used = now
		e.lists[id] = c
		e.mu.Unlock()
		return c.patterns, nil
	}
	e.mu.Unlock()
	patterns, err := e.Subscriptions(ctx, id) // read after v: a change meanwhile makes the next one read again
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.lists[id] = subsList{version: v, patterns: patterns, used: now}
	e.mu.Unlock()
	return patterns, nil
}

// release drops w's reference to each pattern's topic, unless w still
// listens to it; e.mu is held.
func (e *Engine) release(w *watch, patterns []string) {
	now := time.Now()
	for _, p := range patterns {
		t := e.topics[p]
		if t == nil {
			continue
		}
		if !w.stopped && containsString(w.patterns, p) {
			t.refs-- // listenFor counted it again
			continue
		}
		delete(t.watches, w)
		if t.refs--; t.refs <= 0 {
			t.refs, t.unused = 0, now
		}
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// refresh re-reads the patterns of this process's watches of a session
// (its subscriptions changed, or a message was delivered to it alone) and
// wakes them.
func (e *Engine) refresh(id string) {
	e.mu.Lock()
	ws := append([]*watch(nil), e.watchers[id]...)
	e.mu.Unlock()
	for _, w := range ws {
		_ = e.listenFor(w)
		w.notify(server.WakeMessages)
	}
}

// janitor unsubscribes from topics no watch has needed for topicGrace.
func (e *Engine) janitor(ctx context.Context) {
	defer e.wg.Done()
	t := time.NewTicker(topicGrace / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			var drop []string
			e.mu.Lock()
			for id, c := range e.lists {
				if now.Sub(c.used) > topicGrace {
					delete(e.lists, id)
				}
			}
			for p, tp := range e.topics {
				if tp.refs == 0 && now.Sub(tp.unused) > topicGrace {
					delete(e.topics, p)
					go e.topicDropped(p) // mirror.go; not under e.mu
					if tp.live {
						drop = append(drop, e.p+"n:"+p)
					}
				}
			}
			sub := e.sub
			e.mu.Unlock()
			if len(drop) > 0 && sub != nil {
				cctx, cancel := e.call(ctx)
				_ = sub.Do(cctx, sub.B().Unsubscribe().Channel(drop...).Build()).Error()
				cancel()
			}
		}
	}
}
