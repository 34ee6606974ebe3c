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
}

// NewLocalClient registers a local client with this id and starts delivering
// its messages to handler. The handler may call the client's own methods.
func (h *Hub) NewLocalClient(id string, handler func(*Message)) (*LocalClient, error) {
	c, created, err := h.Register(id, KindLocal, 0, "local")
	if err != nil {
		return nil, err
	}
	if !created {
		return nil, fmt.Errorf("%w: id %q is in use", ErrBadClientID, id)
	}
	ctx, cancel := context.WithCancel(context.Background())
	lc := &LocalClient{hub: h, client: c, cancel: cancel}
	lc.wg.Add(1)
	go lc.run(ctx, handler)
	return lc, nil
}

func (lc *LocalClient) run(ctx context.Context, handler func(*Message)) {
	defer lc.wg.Done()
	for {
		msgs, dropped, why := lc.client.Poll(ctx, time.Minute)
		if dropped > 0 {
			lc.hub.log.WithField("client", lc.client.id).Warnf("local client fell behind: %d messages dropped", dropped)
		}
		for _, m := range msgs {
			handler(m)
		}
		if why == PollClosed {
			return
		}
	}
}

// ID returns the client's id, which its publishes carry as Message.ClientID.
func (lc *LocalClient) ID() string { return lc.client.id }

// Subscribe subscribes to a channel or pattern (/a/*, /a/**).
func (lc *LocalClient) Subscribe(pattern string) error {
	_, err := lc.hub.Subscribe(lc.client, pattern)
	return err
}

// Unsubscribe ends a subscription.
func (lc *LocalClient) Unsubscribe(pattern string) { lc.hub.Unsubscribe(lc.client, pattern) }

// Publish sends data (anything encoding/json can encode) to a channel, as a
// message from this client. Stardust channel "foo" is "/stardust/foo".
func (lc *LocalClient) Publish(channel string, data any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadMessage, err)
	}
	_, err = lc.hub.Publish(&Message{Channel: channel, Data: raw, ClientID: lc.client.id})
	return err
}

// Close unsubscribes the client, stops its goroutine and waits for the
// handler to return. Do not call it from the handler.
func (lc *LocalClient) Close() {
	lc.hub.Remove(lc.client)
	lc.cancel()
	lc.wg.Wait()
}
