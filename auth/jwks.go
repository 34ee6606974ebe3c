package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// jwksMinRefetch bounds refetches asked for by tokens naming a key id we do
// not have: at most one per this period, so that tokens with made-up key
// ids cannot make us hammer the key server.
const jwksMinRefetch = 30 * time.Second

// jwksRetry is how soon a failed fetch is tried again (capped by the
// refresh period).
const jwksRetry = 10 * time.Second

// jwksSource keeps the keys of a JWKS URL: fetched at start, refreshed every
// period, and fetched again (rate-limited) when a token names a key id it
// does not have. A failed fetch keeps the last good keys. Its goroutine is
// ended by close.
type jwksSource struct {
	url    string
	period time.Duration
	client *http.Client
	log    *logrus.Entry

	mu      sync.Mutex
	keys    []verifyKey
	fetched time.Time // last successful fetch; zero: none yet
	lastErr error
	asked   time.Time // last refetch asked for by an unknown key id

	kick chan struct{}
	done chan struct{}
	wg   sync.WaitGroup
}

func newJWKSSource(url string, period time.Duration, client *http.Client, log *logrus.Entry) *jwksSource {
	s := &jwksSource{url: url, period: period, client: client, log: log,
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	s.wg.Add(1)
	go s.run()
	return s
}

// current returns the keys of the last good fetch, and the error of the
// last fetch when none has succeeded yet.
func (s *jwksSource) current() ([]verifyKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fetched.IsZero() {
		// The cause (and the URL) is in the log, not for clients.
		if s.lastErr != nil {
			return nil, errors.New("the key set at token_jwks_url could not be fetched yet: try again shortly")
		}
		return nil, errors.New("the key set at token_jwks_url is not fetched yet: try again shortly")
	}
	return s.keys, nil
}

// unknownKid asks for a refetch, at most once per jwksMinRefetch, without
// waiting for it.
func (s *jwksSource) unknownKid(now time.Time) {
	s.mu.Lock()
	if now.Sub(s.asked) < jwksMinRefetch {
		s.mu.Unlock()
		return
	}
	s.asked = now
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *jwksSource) run() {
	defer s.wg.Done()
	for {
		wait := s.period
		if err := s.fetch(); err != nil {
			wait = min(wait, jwksRetry)
		}
		t := time.NewTimer(wait)
		select {
		case <-s.done:
			t.Stop()
			return
		case <-s.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// fetch gets the key set once; on failure the last good keys stay.
func (s *jwksSource) fetch() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.client.Timeout)
	defer cancel()
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	keys, err := s.get(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr = err
	if err != nil {
		if s.log != nil {
			s.log.WithError(err).WithField("url", s.url).Warn("auth: token_jwks_url: fetch failed; the last good keys stay in use")
		}
		return err
	}
	s.keys, s.fetched = keys, time.Now()
	return nil
}

func (s *jwksSource) get(ctx context.Context) ([]verifyKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := readBounded(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	return parseJWKS(body)
}

func (s *jwksSource) close() {
	close(s.done)
	s.wg.Wait()
}
