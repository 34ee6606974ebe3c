package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// WebhookSignature returns the X-Stardust-Signature value of a body:
// "sha256=" and the hex of HMAC-SHA256(secret, body). The app computes
// the same over the body it read and compares with hmac.Equal.
func WebhookSignature(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// sendLoop posts the head of the queue every Interval while this
// process holds the lease. After a failed POST it waits 1s, 2s, 4s… up to
// webhookBackoff before the next, renewing the lease meanwhile so that no
// other process starts over with no wait; events older than RetryFor are
// dropped from the head and counted.
func (w *webhooks) sendLoop() {
	defer w.wg.Done()
	t := time.NewTicker(w.opts.Interval)
	defer t.Stop()
	var failed int
	var next time.Time
	for {
		select {
		case <-w.ctx.Done():
			w.release()
			return
		case now := <-t.C:
			if now.Before(next) {
				ectx, ecancel := w.s.hub.call(context.Background())
				defer ecancel()
				_, _, _ = w.queue.WebhookBatch(ectx, w.node, w.lease, 0)
				continue
			}
			switch ok, err := w.sendOnce(now); {
			case err != nil && w.ctx.Err() != nil:
				return // stopping: the batch stays queued
			case err != nil:
				failed++
				w.failures.Add(1)
				wait := min(w.opts.Interval<<min(failed-1, 10), webhookBackoff)
				next = now.Add(wait)
				w.s.log.WithError(err).WithField("retry_in", wait.String()).Warn("webhooks: POST failed")
			case ok:
				failed, next = 0, time.Time{}
			}
		}
	}
}

// release gives up the lease if this process holds it (it is renewed to
// end at once), so that another process sends without waiting for it to
// run out: a graceful stop hands over at once, a killed process after
// the lease.
func (w *webhooks) release() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, _, _ = w.queue.WebhookBatch(ctx, w.node, time.Millisecond, 0)
}

// sendOnce posts one batch if this process holds the lease and events wait;
// it reports whether it sent any.
func (w *webhooks) sendOnce(now time.Time) (bool, error) {
	ctx := w.ctx
	batch, mine, err := w.queue.WebhookBatch(ctx, w.node, w.lease, WebhookBatch)
	if err != nil {
		w.s.hub.failed(err)
		return false, nil
	}
	if !mine || len(batch) == 0 {
		return false, nil
	}
	if old := w.expiredHead(batch, now); old > 0 {
		if trimmed, err := w.queue.TrimWebhooks(ctx, w.node, old); err == nil && trimmed {
			w.expired.Add(uint64(old))
			w.s.log.WithField("events", old).Warn("webhooks: events dropped, not accepted within webhooks retry time")
		}
		return false, nil
	}
	body := make([]byte, 0, 64+len(batch)*128)
	body = append(body, `{"time_ms":`...)
	body = strconv.AppendInt(body, now.UnixMilli(), 10)
	body = append(body, `,"events":[`...)
	for i, e := range batch {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, e...)
	}
	body = append(body, "]}"...)
	if err := w.post(ctx, body); err != nil {
		return false, err
	}
	if _, err := w.queue.TrimWebhooks(ctx, w.node, len(batch)); err != nil {
		w.s.hub.failed(err)
	}
	w.sent.Add(uint64(len(batch)))
	return true, nil
}

// expiredHead counts the events at the head of batch older than RetryFor.
func (w *webhooks) expiredHead(batch []string, now time.Time) int {
	n := 0
	for _, raw := range batch {
		var e struct {
			TimeMS int64 `json:"time_ms"`
		}
		if json.Unmarshal([]byte(raw), &e) == nil && now.Sub(time.UnixMilli(e.TimeMS)) < w.opts.RetryFor {
			break
		}
		n++
	}
	return n
}

// post sends one body; any answer but 2xx is a failure.
func (w *webhooks) post(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, w.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.opts.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "stardust-webhooks")
	req.Header.Set("X-Stardust-Signature", WebhookSignature(w.opts.Secret, body))
	resp, err := w.opts.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %s", w.opts.URL, resp.Status)
	}
	return nil
}

var (
	descWebhookQueue = prometheus.NewDesc("stardust_webhook_queue_length",
		"Webhook events waiting to be sent (with a shared engine: of every process).", nil, nil)
	descWebhookSent     = prometheus.NewDesc("stardust_webhook_events_sent_total", "Webhook events the app accepted (2xx), sent by this process.", nil, nil)
	descWebhookFailures = prometheus.NewDesc("stardust_webhook_failures_total", "Webhook POSTs that failed (no answer, or not 2xx), by this process.", nil, nil)
	descWebhookDropped  = prometheus.NewDesc("stardust_webhook_events_dropped_total",
		"Webhook events lost, by this process: reason=backlog (too many hub events waiting to be decided), queue_full (webhooks max_queue), expired (not accepted within the retry time).",
		[]string{"reason"}, nil)
)

// collect adds the webhook metrics; w may be nil (webhooks off).
func (w *webhooks) collect(ch chan<- prometheus.Metric) {
	if w == nil || w.queue == nil {
		return
	}
	ectx, ecancel := w.s.hub.call(context.Background())
	defer ecancel()
	if n, err := w.queue.WebhookQueueLen(ectx); err == nil {
		ch <- prometheus.MustNewConstMetric(descWebhookQueue, prometheus.GaugeValue, float64(n))
	}
	ch <- prometheus.MustNewConstMetric(descWebhookSent, prometheus.CounterValue, float64(w.sent.Load()))
	ch <- prometheus.MustNewConstMetric(descWebhookFailures, prometheus.CounterValue, float64(w.failures.Load()))
	for reason, n := range map[string]uint64{"backlog": w.backlogDropped.Load(), "queue_full": w.queueDropped.Load(), "expired": w.expired.Load()} {
		ch <- prometheus.MustNewConstMetric(descWebhookDropped, prometheus.CounterValue, float64(n), reason)
	}
}
