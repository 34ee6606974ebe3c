package server

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// LocalClient is an in-process client, as the POE server's local sessions:
// it subscribes and publishes through the hub with no HTTP and no handshake,
// and ACLs do not apply to it. Messages reach its handler one at a time, in
// order, on a goroutine the LocalClient owns; Close ends it.
//
//	bot, _ := hub.NewLocalClient("reply-bot", func(m *server.Message) {
//		if m.ClientID == "reply-bot" {
//			return // not our own messages
//		}
//		_ = bot.Publish(m.Channel, map[string]any{"user": "Autobot", "chat": "I got your message"})
//	})
//	_ = bot.Subscribe("/chat/demo")
type LocalClient struct {
	hub    *Hub
	client *Client
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	patterns map[string]bool // to subscribe again if the engine lost the session
}

// localTimeout is a local client's session timeout. The hub keeps a client
// alive while this process polls for it, so only a process that died leaves
// one behind, and a shared engine then removes it after this.
const localTimeout = time.Minute

// NewLocalClient registers a local client with this id and starts delivering
// its messages to handler. The handler may call the client's own methods.
func (h *Hub) NewLocalClient(id string, handler func(*Message)) (*LocalClient, error) {
	c, created, err := h.Register(id, KindLocal, localTimeout, "local")
	if err != nil {
		return nil, err
	}
	if !created {
		return nil, fmt.Errorf("%w: id %q is in use", ErrBadClientID, id)
	}
	ctx, cancel := context.WithCancel(context.Background())
	lc := &LocalClient{hub: h, client: c, cancel: cancel, patterns: map[string]bool{}}
	lc.wg.Add(1)
	go lc.run(ctx, handler)
	return lc, nil
}

// run delivers messages until Close. A session that the engine lost (a
// shared engine that came back empty) is made again with its
// subscriptions; while the engine is away it retries every second.
func (lc *LocalClient) run(ctx context.Context, handler func(*Message)) {
	defer lc.wg.Done()
	for {
		b, why := lc.client.Poll(ctx, time.Minute)
		lc.client.deliver(b, why, func(b Batch, _ PollEnd) bool {
			for _, m := range b.Messages {
				handler(m)
			}
			return true
		})
		switch why {
		case PollClosed, PollGone:
			if ctx.Err() != nil || lc.hub.Closed() {
				return
			}
		case PollExpired:
			lc.restore()
		case PollFailed:
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}

// restore makes the client's session and subscriptions again.
func (lc *LocalClient) restore() {
	c, _, err := lc.hub.Register(lc.client.ID(), KindLocal, localTimeout, "local")
	if err != nil {
		return // tried again after the next poll fails
	}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	for p := range lc.patterns {
		_, _ = lc.hub.Subscribe(c, p)
	}
}

// ID returns the client's id, which its publishes carry as Message.ClientID.
func (lc *LocalClient) ID() string { return lc.client.ID() }

// Subscribe subscribes to a channel or pattern (/a/*, /a/**). Local clients
// are bound by HubOptions.MaxSubscriptions and MaxChannels like any other
// (errors ErrTooManySubscriptions, ErrTooManyChannels), not by the
// per-address rate of new channels.
func (lc *LocalClient) Subscribe(pattern string) error {
	if _, err := lc.hub.Subscribe(lc.client, pattern); err != nil {
		return err
	}
	lc.mu.Lock()
	lc.patterns[pattern] = true
	lc.mu.Unlock()
	return nil
}

// Unsubscribe ends a subscription.
func (lc *LocalClient) Unsubscribe(pattern string) error {
	lc.mu.Lock()
	delete(lc.patterns, pattern)
	lc.mu.Unlock()
	_, err := lc.hub.Unsubscribe(lc.client, pattern)
	return err
}

// Publish sends data (anything encoding/json can encode) to a channel, as a
// message from this client. Stardust channel "foo" is "/stardust/foo".
func (lc *LocalClient) Publish(channel string, data any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadMessage, err)
	}
	_, err = lc.hub.Publish(&Message{Channel: channel, Data: raw, ClientID: lc.client.ID()})
	return err
}

// Close unsubscribes the client, stops its goroutine and waits for the
// handler to return. Do not call it from the handler.
func (lc *LocalClient) Close() {
	_ = lc.hub.Remove(lc.client)
	lc.cancel()
	lc.wg.Wait()
}
