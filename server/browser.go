package server

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// SecretSharer is an optional Engine capability: a key that every process
// sharing the engine reads alike, with which each one mints BAYEUX_BROWSER
// cookies that all the others accept. An engine that several processes
// or hubs share must implement it; for one that does not, each hub draws
// its own random key.
type SecretSharer interface {
	// SharedSecret returns the key, creating it on first use: at least 32
	// random bytes, the same for every caller until the engine loses its
	// data. It is read again when a cookie does not verify (see
	// browserMint), so that processes agree again after such a loss.
	SharedSecret(ctx context.Context) ([]byte, error)
}

// SharedSecret implements SecretSharer: a random key, drawn on first use,
// shared by every hub on this engine.
func (e *MemoryEngine) SharedSecret(context.Context) ([]byte, error) {
	if k := e.secret.Load(); k != nil {
		return *k, nil
	}
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	e.secret.CompareAndSwap(nil, &k)
	return *e.secret.Load(), nil
}

var _ SecretSharer = (*MemoryEngine)(nil)

// browserMint issues BAYEUX_BROWSER values and recognises its own: 13 hex
// digits of the time it was issued (Unix microseconds) and 19 of
// randomness, then 32 of their HMAC-SHA256 under the shared key.
// A value it did not issue (a forged or foreign cookie) counts as no cookie,
// so a browser cannot choose the value its sessions are bound to. Safe for
// concurrent use.
type browserMint struct {
	hub *Hub // its engine holds the key, when it is a SecretSharer

	key     atomic.Pointer[mintKey] // nil until first read
	mu      sync.Mutex              // one reader of the engine at a time
	lastTry time.Time               // the last read of the engine (under mu)
}

// mintKey is a key and a pool of HMACs under it: checking a cookie on
// every request allocates nothing. It remembers the values it verified
// last, so that a client's every poll does not cost an HMAC (about 3 % of
// a held poll's answer): seen is direct-mapped by a few of a value's
// random digits, so it stays bounded whatever the values, and a slot
// holds only a value that verified under this key.
type mintKey struct {
	key  []byte
	macs sync.Pool // of *keyedMAC
	seen [mintSeenSlots]atomic.Pointer[string]
}

// mintSeenSlots is how many verified values a mintKey remembers: 64 KiB
// of pointers, and a miss costs only the HMAC it saves.
const mintSeenSlots = 8192

// keyedMAC is an HMAC under a mintKey's key, with room for its input.
type keyedMAC struct {
	h   hash.Hash
	in  [browserRandLen]byte
	out [sha256.Size]byte
}

func newMintKey(key []byte) *mintKey {
	k := &mintKey{key: key}
	k.macs.New = func() any { return &keyedMAC{h: hmac.New(sha256.New, key)} }
	return k
}

// sum returns the MAC of a browser value's signed part r, in m.out; put m
// back in k.macs when done with it.
func (k *mintKey) sum(r string) *keyedMAC {
	m := k.macs.Get().(*keyedMAC)
	m.h.Reset()
	m.h.Write(m.in[:copy(m.in[:], r)])
	m.h.Sum(m.out[:0])
	return m
}

// sign is the MAC part of a browser value whose signed part is r.
func (k *mintKey) sign(r string) string {
	m := k.sum(r)
	defer k.macs.Put(m)
	return hex.EncodeToString(m.out[:browserRandLen/2])
}

// verify reports whether v (of the right form: lower-case hex) is a signed
// part and its MAC.
func (k *mintKey) verify(v string) bool {
	slot := &k.seen[seenSlot(v)]
	// Compared in constant time: a value chosen to land in a slot must not
	// learn, by timing, how much of the value held there it matches.
	if p := slot.Load(); p != nil && sameInConstantTime(*p, v) {
		return true
	}
	if !k.verifyMAC(v) {
		return false
	}
	kept := v // its own variable: v itself does not move to the heap
	slot.Store(&kept)
	return true
}

// seenSlot is the slot of mintKey.seen for v: from the last digits of its
// random part (v is lower-case hex, browserRandLen digits and more).
func seenSlot(v string) int {
	var n int
	for _, c := range v[browserRandLen-4 : browserRandLen] {
		n = n<<4 | int(unhex(byte(c)))
	}
	return n % mintSeenSlots
}

// sameInConstantTime reports whether a and b are equal, in a time that
// depends only on their lengths (as subtle.ConstantTimeCompare, without
// converting them to slices).
func sameInConstantTime(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	var d byte
	for i := 0; i < len(a); i++ {
		d |= a[i] ^ b[i]
	}
	return d == 0
}

// verifyMAC reports whether v's MAC is its signed part's.
func (k *mintKey) verifyMAC(v string) bool {
	var mac [browserRandLen / 2]byte
	for i := range mac {
		mac[i] = unhex(v[browserRandLen+2*i])<<4 | unhex(v[browserRandLen+2*i+1])
	}
	m := k.sum(v[:browserRandLen])
	defer k.macs.Put(m)
	return hmac.Equal(m.out[:len(mac)], mac[:])
}

// unhex is the value of a lower-case hex digit.
func unhex(c byte) byte {
	if c >= 'a' {
		return c - 'a' + 10
	}
	return c - '0'
}

// browserRandLen is the length in hex of the part of a browser value that
// its MAC signs: its issue time and its random bits.
const browserRandLen = 32

// browserTimeLen is the length in hex of a browser value's issue time.
const browserTimeLen = 13

// secretRetry bounds how often a process reads the key again: after the
// engine failed, or when a cookie of the right form does not verify.
const secretRetry = 10 * time.Second

// errNoSecret: the engine could not give the key.
var errNoSecret = errors.New("the cookie key is not available")

// secret returns the key, reading it from the engine if this process has
// none yet, or again (at most every secretRetry) when reread is set.
func (m *browserMint) secret(reread bool) (*mintKey, error) {
	if k := m.key.Load(); k != nil && !reread {
		return k, nil
	}
	sharer, shared := m.hub.engine.(SecretSharer)
	m.mu.Lock()
	defer m.mu.Unlock()
	k := m.key.Load()
	if !shared {
		if k == nil {
			b := make([]byte, 32)
			_, _ = rand.Read(b)
			k = newMintKey(b)
			m.key.Store(k)
		}
		return k, nil
	}
	if k != nil && (!reread || time.Since(m.lastTry) < secretRetry) {
		return k, nil
	}
	if k == nil && time.Since(m.lastTry) < time.Second {
		return nil, fmt.Errorf("%w: %w", ErrEngine, errNoSecret) // failed just now: do not queue on the engine
	}
	m.lastTry = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := sharer.SharedSecret(ctx)
	switch {
	case err == nil && len(b) < 32:
		err = fmt.Errorf("%w: %w: the engine's key has %d bytes", ErrEngine, errNoSecret, len(b))
	case err != nil:
		err = fmt.Errorf("%w: %w: %v", ErrEngine, errNoSecret, err)
	}
	if err != nil {
		m.hub.failed(err)
		if k != nil {
			return k, nil // keep the key this process had
		}
		return nil, err
	}
	if k == nil || !hmac.Equal(k.key, b) {
		k = newMintKey(b)
		m.key.Store(k)
	}
	return k, nil
}

// issue returns a new browser value.
func (m *browserMint) issue() (string, error) {
	k, err := m.secret(false)
	if err != nil {
		return "", err
	}
	r := fmt.Sprintf("%013x", time.Now().UnixMicro()&(1<<52-1)) + NewID()[:browserRandLen-browserTimeLen]
	return r + k.sign(r), nil
}

// browserIssued is when a browser value (issued here: see browserMint) was
// issued.
func browserIssued(v string) time.Time {
	if len(v) < browserTimeLen {
		return time.Time{}
	}
	us, err := strconv.ParseInt(v[:browserTimeLen], 16, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMicro(us)
}

// valid reports whether v (of the right form, see isBrowserValue) was
// issued by a process sharing this engine.
func (m *browserMint) valid(v string) bool {
	k, err := m.secret(false)
	if err != nil {
		return false
	}
	if k.verify(v) {
		return true
	}
	// Another process may have a newer key (the engine lost its data).
	newer, err := m.secret(true)
	return err == nil && newer != k && newer.verify(v)
}

// browserOf returns the value of the request's first BAYEUX_BROWSER cookie
// that this server issued, "" if none.
func (rr requestRules) browserOf(r *http.Request) string {
	return browserCookieOf(r, rr.browsers.valid)
}

// ensureBrowser returns the request's browser cookie value (presented), or
// issues one and adds its Set-Cookie to h (a response's headers). The error
// (ErrEngine) says that the engine cannot give the key to mint or check
// cookies with.
func (rr requestRules) ensureBrowser(h http.Header, r *http.Request, base string) (value string, presented bool, err error) {
	if v := rr.browserOf(r); v != "" {
		return v, true, nil
	}
	v, err := rr.browsers.issue()
	if err != nil {
		return "", false, err
	}
	h.Add("Set-Cookie", rr.browserCookie(r, base, v).String())
	return v, false, nil
}
