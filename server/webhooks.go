package server

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Webhooks tell the site's back end what happened on its channels:
// channel_occupied and channel_vacated (a channel's first subscriber and
// its last), member_added and member_removed (a user's first session on a
// channel of a presence or join_leave block, and their last) and
// client_disconnected. They are POSTed to WebhookOptions.URL as
// {"time_ms":N,"events":[{"name":…,"channel":…,"user_id":…}…]} in batches of
// up to WebhookBatch events, at most one POST a second, signed with
// X-Stardust-Signature: sha256=HEX(HMAC-SHA256(secret, body)), and retried
// with backoff for up to an hour.
//
// Each event is decided once: the hub's events (subscribe, unsubscribe,
// client_disconnect) happen in exactly one process, and the transitions
// they make are counted by the engine's Occupancy atomically, so with the
// Redis engine the process that sees a transition is the one that queues
// its event. Members are the hub's join and leave events, which the
// engine's Members decides once in the same way (joinleave.go): on
// join_leave channels, and on presence channels, whose users the hub then
// counts for the webhooks alone (HubOptions.Members). The queue is the engine's too (WebhookQueue): whichever
// process holds the sender's lease posts it, and a process that dies
// leaves its events to the next holder.
//
// Nothing here runs on a client's request: the hub's callback only puts
// the event on a bounded channel (full: it is dropped and counted), and
// two goroutines of their own decide and send, so that an app that is
// down or slow never slows delivery.

// Webhook event names.
const (
	WebhookChannelOccupied    = "channel_occupied"
	WebhookChannelVacated     = "channel_vacated"
	WebhookMemberAdded        = "member_added"
	WebhookMemberRemoved      = "member_removed"
	WebhookClientDisconnected = "client_disconnected"
)

// WebhookEvents are every webhook event name, the default of
// WebhookOptions.Events.
var WebhookEvents = []string{WebhookChannelOccupied, WebhookChannelVacated, WebhookMemberAdded,
	WebhookMemberRemoved, WebhookClientDisconnected}

const (
	// WebhookBatch is the most events in one POST.
	WebhookBatch = 100
	// webhookBacklog bounds the hub events waiting in this process to be
	// decided.
	webhookBacklog = 10000
	// webhookBackoff is the longest wait between failed POSTs.
	webhookBackoff = 60 * time.Second
)

// WebhookOptions configure webhooks ([webhooks] in the configuration).
type WebhookOptions struct {
	URL    string // where events are POSTed; "" turns webhooks off
	Secret string // the HMAC-SHA256 key of X-Stardust-Signature
	// Events are the names sent; nil: WebhookEvents.
	Events []string
	// MaxQueue bounds the events waiting to be sent (with a shared engine,
	// by all processes); more are dropped and counted. Default 100000.
	MaxQueue int
	// Timeout bounds one POST; default 10s.
	Timeout time.Duration
	// Client sends the POSTs; nil: a client of its own.
	Client *http.Client
	// Interval is the least time between two POSTs (by all processes
	// sharing the engine), default 1s; RetryFor how long an event is
	// retried before it is dropped, default 1h. Tests shorten them.
	Interval time.Duration
	RetryFor time.Duration
}

// webhookEvent is one event as queued and sent.
type webhookEvent struct {
	Name     string `json:"name"`
	Channel  string `json:"channel,omitempty"`
	UserID   string `json:"user_id,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	TimeMS   int64  `json:"time_ms"`
	// ID is unique per event: the app can drop one it saw, as a retry
	// after an answer that was lost sends it again.
	ID string `json:"id"`
}

// webhooks is a server's webhook state. Its goroutines end with the hub.
type webhooks struct {
	opts WebhookOptions
	// lease is how long a sender holds the queue without renewing it:
	// longer than a POST may take, so that a slow POST is not sent twice;
	// a sender that died is replaced this long after its last renewal.
	lease  time.Duration
	want   map[string]bool
	node   string // this process, as the lease's owner
	s      *Server
	occ    Occupancy
	queue  WebhookQueue
	events chan Event
	// ctx ends the goroutines and a POST in flight (stop); wg waits for them.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	backlogDropped atomic.Uint64 // hub events not decided: backlog full
	queueDropped   atomic.Uint64 // events not queued: queue full
	expired        atomic.Uint64 // events dropped after WebhookRetryFor
	sent           atomic.Uint64 // events the app accepted
	failures       atomic.Uint64 // POSTs that failed
}

// newWebhooks returns nil when opts are nil or name no URL.
func newWebhooks(opts *WebhookOptions) *webhooks {
	if opts == nil || opts.URL == "" {
		return nil
	}
	o := *opts
	if o.Events == nil {
		o.Events = WebhookEvents
	}
	if o.MaxQueue <= 0 {
		o.MaxQueue = 100000
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.RetryFor <= 0 {
		o.RetryFor = time.Hour
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: o.Timeout}
	}
	w := &webhooks{opts: o, lease: 2*o.Timeout + 5*o.Interval, want: map[string]bool{}, node: NewID(), events: make(chan Event, webhookBacklog)}
	for _, e := range o.Events {
		w.want[e] = true
	}
	return w
}

// hook is chained before HubOptions.Events: it never blocks.
func (w *webhooks) hook(e Event) {
	switch e.Type {
	case "subscribe", "unsubscribe", "client_disconnect", "join", "leave":
	default:
		return
	}
	select {
	case w.events <- e:
	default:
		w.backlogDropped.Add(1)
	}
}

// start uses the engine's occupancy and queue when it has them, and runs
// the two goroutines.
func (w *webhooks) start(s *Server) {
	w.s = s
	local := newLocalWebhooks(s.hub.engine)
	w.occ, w.queue = local, local
	if o, ok := s.hub.engine.(Occupancy); ok {
		w.occ = o
	}
	if q, ok := s.hub.engine.(WebhookQueue); ok {
		w.queue = q
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.wg.Add(2)
	go w.decideLoop()
	go w.sendLoop()
}

// stop ends the goroutines, before the engine closes: the events already
// on the backlog are decided and queued first (with a shared engine,
// another process sends them), and a POST in flight is cancelled (its
// batch stays queued).
func (w *webhooks) stop() {
	if w == nil || w.cancel == nil {
		return
	}
	w.cancel()
	w.wg.Wait()
}

// channelEvents says whether any event needs occupancy.
func (w *webhooks) channelEvents() bool {
	return w.want[WebhookChannelOccupied] || w.want[WebhookChannelVacated]
}

// memberEvents says whether member_added or member_removed is sent.
func (w *webhooks) memberEvents() bool {
	return w.want[WebhookMemberAdded] || w.want[WebhookMemberRemoved]
}

func (w *webhooks) decideLoop() {
	defer w.wg.Done()
	for {
		select {
		case <-w.ctx.Done():
			for range len(w.events) { // what was there when asked to stop
				w.decideAndPush(<-w.events)
			}
			return
		case e := <-w.events:
			w.decideAndPush(e)
		}
	}
}

func (w *webhooks) decideAndPush(e Event) {
	if out := w.decide(e); len(out) > 0 {
		w.push(out)
	}
}

// decide turns one hub event into the webhook events it causes.
func (w *webhooks) decide(e Event) []webhookEvent {
	ctx, cancel := w.s.hub.call(context.Background())
	defer cancel()
	var out []webhookEvent
	add := func(name, channel, user, client string) {
		if w.want[name] {
			out = append(out, webhookEvent{Name: name, Channel: channel, UserID: user, ClientID: client,
				TimeMS: time.Now().UnixMilli(), ID: NewID()})
		}
	}
	switch e.Type {
	case "join": // decided once by the engine's Members (joinleave.go)
		add(WebhookMemberAdded, e.Channel, e.User, "")
	case "leave":
		add(WebhookMemberRemoved, e.Channel, e.User, "")
	case "subscribe":
		if !w.channelEvents() {
			return nil
		}
		first, err := w.occ.Occupy(ctx, e.ClientID, e.User, e.Channel)
		if err != nil {
			w.s.log.WithError(err).Warn("webhooks: occupancy not recorded")
			return nil
		}
		if first {
			add(WebhookChannelOccupied, e.Channel, "", "")
		}
	case "unsubscribe", "client_disconnect":
		var chans []string
		if e.Type == "unsubscribe" {
			chans = []string{e.Channel}
		}
		var gone []Vacancy
		if w.channelEvents() {
			var err error
			if gone, err = w.occ.Vacate(ctx, e.ClientID, chans); err != nil {
				w.s.log.WithError(err).Warn("webhooks: occupancy not recorded")
			}
		}
		slices.SortFunc(gone, func(a, b Vacancy) int { return strings.Compare(a.Channel, b.Channel) })
		user := e.User
		for _, v := range gone {
			if v.Empty {
				add(WebhookChannelVacated, v.Channel, "", "")
			}
			if user == "" {
				user = v.User
			}
		}
		if e.Type == "client_disconnect" {
			add(WebhookClientDisconnected, "", user, e.ClientID)
		}
	}
	return out
}

// push queues events, counting those the queue had no room for.
func (w *webhooks) push(events []webhookEvent) {
	enc := make([]string, len(events))
	for i, e := range events {
		b, _ := json.Marshal(e)
		enc[i] = string(b)
	}
	ectx, ecancel := w.s.hub.call(context.Background())
	defer ecancel()
	dropped, err := w.queue.PushWebhooks(ectx, enc, w.opts.MaxQueue)
	if err != nil {
		w.s.hub.failed(err)
		dropped = len(enc)
	}
	w.queueDropped.Add(uint64(dropped))
}
