package server

import (
	"strings"
	"testing"
	"time"
)

// TestFanOutAnswersBeforeNextRequests: while a pass of answers is in
// progress (a poll woken whose answer has not left: here one counted by
// hand), the next request of a client already answered is not read and
// served; it is once the pass's answers have all left (answerPass).
func TestFanOutAnswersBeforeNextRequests(t *testing.T) {
	s, srv, addr := takeoverServer(t, Options{PollTimeout: 10 * time.Second}, nil, nil)
	rc := dialRaw(t, addr)
	rc.send(pollGet("p1", "HTTP/1.1", ""))
	waitTakenOver(t, s, srv, 1)
	s.hub.pass.woken() // another poll's answer, still to write
	publishA(t, s, `{"n":1}`)
	if _, body := rc.read(); !strings.Contains(body, `"n":1`) {
		t.Fatalf("answer: %q", body)
	}
	rc.send(pollGet("p1", "HTTP/1.1", ""))
	time.Sleep(150 * time.Millisecond)
	if polling(s.Hub(), "p1") {
		t.Fatal("the next poll was served while the pass's other answer was still to write")
	}
	s.hub.pass.answered()
	waitTakenOver(t, s, srv, 1)
	publishA(t, s, `{"n":2}`)
	if _, body := rc.read(); !strings.Contains(body, `"n":2`) {
		t.Fatalf("next answer: %q", body)
	}
	waitPassClosed(t, s, "after the pass")
}

// waitPassClosed waits until no answer is counted open (answerPass): the
// client may read its answer just before the server counts it gone.
func waitPassClosed(t *testing.T, s *Server, when string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.hub.pass.open.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d answers counted open", when, s.hub.pass.open.Load())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestFanOutPassCountsEveryAnswer: a fan-out to polls held on their
// connections, the first ones taken over and the next ones served there,
// leaves no answer counted open (else every next request would wait
// passWaitMax), including polls whose client left.
func TestFanOutPassCountsEveryAnswer(t *testing.T) {
	s, srv, addr := takeoverServer(t, Options{PollTimeout: 10 * time.Second}, nil, nil)
	const n = 8
	rcs := make([]*rawConn, n)
	for i := range rcs {
		rcs[i] = dialRaw(t, addr)
	}
	for round := range 3 {
		for i, rc := range rcs {
			rc.send(pollGet("f"+string(rune('a'+i)), "HTTP/1.1", ""))
		}
		waitTakenOver(t, s, srv, n)
		if round == 2 {
			_ = rcs[0].c.Close() // gone: its answer is not written
		}
		publishA(t, s, `{"n":1}`)
		for _, rc := range rcs[min(round/2, 1):] {
			if _, body := rc.read(); !strings.Contains(body, `"n":1`) {
				t.Fatalf("round %d: %q", round, body)
			}
		}
		waitPassClosed(t, s, "round "+string(rune('0'+round)))
	}
}

// TestAnswerPassWaitIsBounded: an answer that never leaves (counted open
// for ever) holds a next request passWaitMax at most.
func TestAnswerPassWaitIsBounded(t *testing.T) {
	var a answerPass
	a.woken()
	start := time.Now()
	a.next()
	if took := time.Since(start); took < passWaitMax/2 || took > 10*passWaitMax {
		t.Fatalf("waited %v, want about %v", took, passWaitMax)
	}
	a.answered()
	start = time.Now()
	a.next()
	if took := time.Since(start); took > passWaitMax/2 {
		t.Fatalf("waited %v with no answer open", took)
	}
}
