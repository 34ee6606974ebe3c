package server

import (
	"context"
	"sort"
	"sync"
	"time"
)

// memHistory keeps every channel's history of a MemoryEngine within
// Limits.MaxHistoryBytes. It keeps a running total of the bytes kept and
// the channels with history in a list ordered by their last publish, so
// that a publish costs O(1) (plus the channels it drops) however many
// channels there are. Its lock is taken last, after the engine's and a
// channel's, and nothing else is locked under it.
type memHistory struct {
	mu         sync.Mutex
	bytes      int64
	trimmed    uint64
	head, tail *memChannel // least recently published first
}

// keep appends m to ch's history (at most size messages), makes ch the most
// recently published channel, then drops whole histories, least recently
// published first, until the total is at most max again.
func (h *memHistory) keep(ch *memChannel, m *Message, size int, max int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	added := int64(m.size())
	if len(ch.history) >= size {
		added -= int64(ch.history[0].size())
		ch.lostSeq, ch.lostTime = ch.history[0].Seq, ch.history[0].Time
		copy(ch.history, ch.history[1:])
		ch.history[len(ch.history)-1] = m
	} else {
		ch.history = append(ch.history, m)
	}
	ch.hbytes += added
	h.bytes += added
	h.unlink(ch)
	h.append(ch)
	for h.bytes > max && h.head != nil {
		h.drop(h.head)
		h.trimmed++
	}
}

// expire drops ch's oldest messages published before cutoff (a history
// TTL), which then count as lost for gap notices.
func (h *memHistory) expire(ch *memChannel, cutoff time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for n < len(ch.history) && ch.history[n].Time.Before(cutoff) {
		n++
	}
	if n == 0 {
		return
	}
	if n == len(ch.history) {
		h.drop(ch)
		return
	}
	var freed int64
	for _, m := range ch.history[:n] {
		freed += int64(m.size())
	}
	ch.lostSeq, ch.lostTime = ch.history[n-1].Seq, ch.history[n-1].Time
	rest := copy(ch.history, ch.history[n:])
	clear(ch.history[rest:])
	ch.history = ch.history[:rest]
	ch.hbytes -= freed
	h.bytes -= freed
}

// after returns a copy of ch's kept messages with Seq > after.
func (h *memHistory) after(ch *memChannel, after uint64) []*Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	i := sort.Search(len(ch.history), func(i int) bool { return ch.history[i].Seq > after })
	if i == len(ch.history) {
		return nil
	}
	return append([]*Message(nil), ch.history[i:]...)
}

// forget drops the history of a channel being swept (not a trim).
func (h *memHistory) forget(ch *memChannel) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.drop(ch)
}

func (h *memHistory) stats() (bytes int64, trimmed uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.bytes, h.trimmed
}

// drop empties ch's history and takes it off the list.
func (h *memHistory) drop(ch *memChannel) {
	h.bytes -= ch.hbytes
	ch.hbytes = 0
	if n := len(ch.history); n > 0 {
		ch.lostSeq, ch.lostTime = ch.history[n-1].Seq, ch.history[n-1].Time
	}
	clear(ch.history)
	ch.history = nil
	h.unlink(ch)
}

func (h *memHistory) append(ch *memChannel) {
	ch.prev, ch.next = h.tail, nil
	if h.tail != nil {
		h.tail.next = ch
	} else {
		h.head = ch
	}
	h.tail = ch
}

// unlink takes ch off the list, if it is on it.
func (h *memHistory) unlink(ch *memChannel) {
	if ch.prev == nil && h.head != ch {
		return // not listed
	}
	if ch.prev != nil {
		ch.prev.next = ch.next
	} else {
		h.head = ch.next
	}
	if ch.next != nil {
		ch.next.prev = ch.prev
	} else {
		h.tail = ch.prev
	}
	ch.prev, ch.next = nil, nil
}

var _ ChannelCreator = (*MemoryEngine)(nil)

// CreateChannels implements ChannelCreator. Channels the engine keeps
// already are only marked used, under its read lock: the usual case, a
// publish to a channel in use, never waits for the write lock.
func (e *MemoryEngine) CreateChannels(_ context.Context, names []string, budget int) (int, error) {
	segs := make([][]string, len(names))
	for i, name := range names {
		s, err := ParseChannel(name, false)
		if err != nil {
			return 0, err
		}
		segs[i] = s
	}
	now := time.Now()
	if e.markUsed(names, now) {
		return 0, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var missing []int
	for i, name := range names {
		if e.channels[name] == nil && !containsBefore(names, i) {
			missing = append(missing, i)
		}
	}
	switch {
	case budget >= 0 && len(missing) > budget:
		return 0, ErrChannelBudget
	case len(e.channels)+len(missing) > e.opts.MaxChannels:
		return 0, e.tooManyChannels()
	}
	for _, i := range missing {
		e.channels[names[i]] = &memChannel{segs: segs[i]}
	}
	for _, name := range names {
		ch := e.channels[name]
		ch.mu.Lock()
		ch.lastUsed = now
		ch.mu.Unlock()
	}
	return len(missing), nil
}

// markUsed marks the named channels used now and reports whether they
// all exist.
func (e *MemoryEngine) markUsed(names []string, now time.Time) bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	for _, name := range names {
		if e.channels[name] == nil {
			return false
		}
	}
	for _, name := range names {
		ch := e.channels[name]
		ch.mu.Lock()
		ch.lastUsed = now
		ch.mu.Unlock()
	}
	return true
}

// containsBefore reports whether names[i] appears earlier in names.
func containsBefore(names []string, i int) bool {
	for _, n := range names[:i] {
		if n == names[i] {
			return true
		}
	}
	return false
}
