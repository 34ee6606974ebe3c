package server

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// Gap notices: a client that resumes (a Stardust poll's since, an SSE
// stream's Last-Event-ID or since) from a point before the oldest message
// its channels still keep has missed messages, and is told so first, so
// that a page knows to reload its state rather than trust the replay.

// HistoryLoss is an optional capability of an Engine: which message of a
// channel's history is the newest one no longer kept (dropped for
// HistorySize, MaxHistoryBytes or history_remove). Without it no gap is
// reported.
type HistoryLoss interface {
	// Lost returns the sequence and time of the newest message of the
	// channel that is no longer kept; 0 and the zero time when none was.
	Lost(ctx context.Context, channel string) (seq uint64, at time.Time, err error)
}

var _ HistoryLoss = (*MemoryEngine)(nil)

// Lost implements HistoryLoss.
func (e *MemoryEngine) Lost(_ context.Context, name string) (uint64, time.Time, error) {
	e.mu.RLock()
	ch := e.channels[name]
	e.mu.RUnlock()
	if ch == nil {
		return 0, time.Time{}, nil
	}
	e.hist.mu.Lock()
	defer e.hist.mu.Unlock()
	return ch.lostSeq, ch.lostTime, nil
}

// missed reports whether a client resuming the channels from a point has
// missed a message no longer kept: missed(seq, time) says whether a lost
// message is after that point. oldest is the oldest message the channels
// still keep (nil: none).
func (s *Server) missed(channels []string, after func(seq uint64, at time.Time) bool) (gap bool, oldest *Message, err error) {
	hl, ok := s.hub.engine.(HistoryLoss)
	if !ok {
		return false, nil, nil
	}
	for _, ch := range channels {
		ctx, cancel := s.hub.call(context.Background())
		seq, at, err := hl.Lost(ctx, ch)
		cancel()
		if err != nil {
			return false, nil, s.hub.failed(err)
		}
		if seq == 0 || !after(seq, at) {
			continue
		}
		gap = true
	}
	if !gap {
		return false, nil, nil
	}
	for _, ch := range channels {
		hist, err := s.hub.History(ch, 0)
		if err != nil {
			return false, nil, err
		}
		if len(hist) > 0 && (oldest == nil || hist[0].Seq < oldest.Seq) {
			oldest = hist[0]
		}
	}
	return true, oldest, nil
}

// gapJSON is the notice: since as the client gave it, oldest the position
// (Stardust: the _ts, SSE: the event id) of the oldest message kept, or null.
func gapJSON(since, oldest string) []byte {
	return fmt.Appendf(nil, `{"type":"stardust.gap","since":%s,"oldest":%s}`, since, oldest)
}

// stardustGap is the gap notice of a Stardust poll resuming at since (the
// text of its since, a valid number), or nil.
func (s *Server) stardustGap(channels []string, sinceText string, since time.Time) ([]byte, error) {
	gap, oldest, err := s.missed(channels, func(_ uint64, at time.Time) bool { return at.After(since) })
	if !gap || err != nil {
		return nil, err
	}
	o := "null"
	if oldest != nil {
		o = strconv.FormatFloat(unixSeconds(oldest.Time), 'f', 6, 64)
	}
	return gapJSON(sinceText, o), nil
}

// sseGap is the gap notice of an SSE stream resuming after event lastID or
// at since (after tells the messages past that point), or nil.
func (s *Server) sseGap(channels []string, lastID uint64, since time.Time, after func(seq uint64, at time.Time) bool) ([]byte, error) {
	sinceText := strconv.FormatUint(lastID, 10)
	if lastID == 0 {
		sinceText = strconv.FormatFloat(unixSeconds(since), 'f', 6, 64)
	}
	gap, oldest, err := s.missed(channels, after)
	if !gap || err != nil {
		return nil, err
	}
	o := "null"
	if oldest != nil {
		o = strconv.FormatUint(oldest.Seq, 10)
	}
	return gapJSON(sinceText, o), nil
}

// withFirst puts item first in a JSON array.
func withFirst(item, array []byte) []byte {
	if len(array) <= 2 {
		return append(append([]byte{'['}, item...), ']')
	}
	return append(append(append([]byte{'['}, item...), ','), array[1:]...)
}
