package redis_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stardust-go/stardust/engine/redis"
	"github.com/stardust-go/stardust/internal/redistest"
	"github.com/stardust-go/stardust/server"
)

// TestOlderPollNoticeKeepsNewerPoll: a client's poll begins in process 1,
// then (the client moved on) in process 2, before process 2 has heard
// process 1's notice. That notice, heard late, must not release process
// 2's newer poll; a notice of a poll that began after it must.
func TestOlderPollNoticeKeepsNewerPoll(t *testing.T) {
	srv := redistest.Start(t)
	e1 := open(t, srv.URL, "older:", server.Limits{})
	e2 := open(t, srv.URL, "older:", server.Limits{})
	if err := e1.CreateSession(ctx, server.Session{ID: "s", Kind: server.KindStardust, Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	// Process 2's pub/sub reader is slow: process 1's first notice
	// waits there until released.
	arrived, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free)
	first := "r " + redis.Node(e1) + " s"
	var held sync.Once
	redis.OnNotice(e2, func(notice string) {
		if notice == first {
			held.Do(func() { close(arrived); <-release })
		}
	})
	if err := e1.NotifyPoll(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	await(t, arrived, "process 1's notice reaching process 2")
	// Process 2's poll begins: its own notice queues behind process 1's.
	if err := e2.NotifyPoll(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	replaced := make(chan struct{}, 4)
	stop := e2.Watch("s", func(w server.Wake) {
		if w == server.WakeReplaced {
			replaced <- struct{}{}
		}
	})
	defer stop()
	own := make(chan struct{})
	redis.OnNotice(e2, func(notice string) {
		if notice == "r "+redis.Node(e2)+" s" {
			close(own)
		}
	})
	free()
	await(t, own, "process 2 hearing its own notice")
	time.Sleep(50 * time.Millisecond) // the notice's handling, after the hook
	select {
	case <-replaced:
		t.Fatal("the notice of the older poll in process 1 released the newer poll in process 2")
	default:
	}
	// A poll that begins in process 1 now is newer: it releases process 2's.
	if err := e1.NotifyPoll(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	await(t, replaced, "a newer poll in process 1 releasing process 2's poll")
}
