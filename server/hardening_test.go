package server

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Issue 10, items 7 to 11: input checks, clamps and hashes.

func TestPasswordHashForms(t *testing.T) {
	bc, err := HashPassword("wonder")
	if err != nil {
		t.Fatal(err)
	}
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	key := argon2.IDKey([]byte("wonder"), salt, 1, 8*1024, 1, 32)
	a2 := fmt.Sprintf("$argon2id$v=19$m=%d,t=1,p=1$%s$%s", 8*1024, base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
	for _, tc := range []struct {
		hash string
		weak bool
	}{{bc, false}, {a2, false}, {UserHash("wonder"), true}} {
		weak, err := CheckHash(tc.hash)
		if err != nil || weak != tc.weak {
			t.Errorf("CheckHash(%q) = %v, %v; want weak=%v", tc.hash, weak, err, tc.weak)
		}
		if !CheckPassword(tc.hash, "wonder") {
			t.Errorf("%q: right password refused", tc.hash)
		}
		if CheckPassword(tc.hash, "wander") {
			t.Errorf("%q: wrong password accepted", tc.hash)
		}
	}
	for _, bad := range []string{"", "wonder", "sha256:abc", "$2b$xx", "$argon2id$v=19$m=0,t=1,p=1$AAAA$AAAA", "md5:" + strings.Repeat("0", 32)} {
		if _, err := CheckHash(bad); err == nil {
			t.Errorf("CheckHash(%q) accepted", bad)
		}
	}
	// HandshakeAuth refuses a configuration it cannot check.
	if _, err := HandshakeAuth("users", "", map[string]string{"alice": "plain"}); err == nil {
		t.Error("HandshakeAuth took a plain-text password")
	}
}

func TestHandshakeWithBcryptUser(t *testing.T) {
	auth, err := HandshakeAuth("users", "", map[string]string{"alice": "$2a$10$Fsz200KeVESoS4d2Ym64X.aEDjpt70rSWcnuaLNSKmMZBsKYu3Ki2"})
	if err != nil {
		t.Fatal(err)
	}
	b := newBX(t, BayeuxOptions{MessageACL: auth})
	hs := func(user, pass string) map[string]any {
		return b.post(map[string]any{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"long-polling"},
			"ext": map[string]any{"username": user, "password": pass}})[0]
	}
	if r := hs("alice", "wonder"); r["successful"] != true {
		t.Fatalf("alice/wonder refused: %v", r)
	}
	for _, up := range [][2]string{{"alice", "wander"}, {"bob", "wonder"}} {
		wantError(t, hs(up[0], up[1]), "403:")
	}
}

func TestInvalidUTF8Refused(t *testing.T) {
	_, ts := testServer(t, Options{})
	resp, body := postForm(t, ts.URL+"/comet/channel/foo", `{"ok":"yes"}`, "{\"x\":\"a\xffb\"}")
	if resp.StatusCode != 400 || !strings.Contains(string(body), "invalid UTF-8 in m #2 at byte 7") {
		t.Errorf("form m: %d %s", resp.StatusCode, body)
	}
	resp2, err := http.Post(ts.URL+"/comet/channel/foo", "application/json", strings.NewReader("[{\"x\":\"\xc3\"}]"))
	if err != nil {
		t.Fatal(err)
	}
	body2, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if resp2.StatusCode != 400 || !strings.Contains(string(body2), "invalid UTF-8 in the JSON body at byte 7") {
		t.Errorf("JSON body: %d %s", resp2.StatusCode, body2)
	}

	b := newBX(t, BayeuxOptions{AnonPublish: true})
	resp3, err := b.client().Post(b.url, "application/json", strings.NewReader("[{\"channel\":\"/a\",\"data\":\"\xed\xa0\x80\"}]"))
	if err != nil {
		t.Fatal(err)
	}
	body3, _ := io.ReadAll(resp3.Body)
	resp3.Body.Close()
	if resp3.StatusCode != 400 || !strings.Contains(string(body3), "invalid UTF-8 in the Bayeux message at byte 25") {
		t.Errorf("Bayeux body: %d %s", resp3.StatusCode, body3)
	}
	// Nothing was stored.
	if got := history(t, b.s.hub, "/a"); len(got) != 0 {
		t.Errorf("history holds %d messages", len(got))
	}
}

func TestJSONPEscapesLineSeparators(t *testing.T) {
	b := newBX(t, BayeuxOptions{})
	id := b.handshake("callback-polling")
	b.subscribe(id, "/ls")
	if _, err := b.s.hub.Publish(&Message{Channel: "/ls", Data: []byte("\"a\u2028b\u2029c\"")}); err != nil {
		t.Fatal(err)
	}
	msg := fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"callback-polling","advice":{"timeout":0}}]`, id)
	resp, err := b.client().Get(b.url + "?jsonp=cb&message=" + url.QueryEscape(msg))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.ContainsAny(string(body), "\u2028\u2029") || !strings.Contains(string(body), `a\u2028b\u2029c`) {
		t.Errorf("JSONP answer: %s", body)
	}
}

func TestConnectTimeoutClampedWithoutOverflow(t *testing.T) {
	b := newBX(t, BayeuxOptions{}, func(o *Options) { o.PollTimeout = 300 * time.Millisecond })
	id := b.handshake()
	for _, timeout := range []int64{math.MaxInt64, math.MaxInt64 / 1000, 3_600_000} {
		start := time.Now()
		m := connectMsg(id, 0)
		m["advice"] = map[string]any{"timeout": timeout}
		r := b.post(m)
		took := time.Since(start)
		if r[len(r)-1]["successful"] != true {
			t.Fatalf("connect: %v", r)
		}
		if took < 250*time.Millisecond || took > 5*time.Second {
			t.Errorf("advice.timeout %d: held %s, want the configured 300ms", timeout, took)
		}
	}
}

func TestStardustPublishesPerRequestBounded(t *testing.T) {
	_, ts := testServer(t, Options{})
	var chans []string
	for i := range 64 {
		chans = append(chans, fmt.Sprintf("c%d", i))
	}
	items := strings.TrimSuffix(strings.Repeat(`{"a":1},`, 100), ",")
	resp, err := http.Post(ts.URL+"/comet/channel/"+strings.Join(chans, "+"), "application/json", strings.NewReader("["+items+"]"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 413 || !strings.Contains(string(body), "6400 publishes, over 1000") {
		t.Errorf("100 messages to 64 channels: %d %s", resp.StatusCode, body)
	}
	resp, body = postForm(t, ts.URL+"/comet/channel/"+strings.Join(chans, "+"), `{"a":1}`)
	if resp.StatusCode != 200 {
		t.Errorf("1 message to 64 channels: %d %s", resp.StatusCode, body)
	}
}

func TestStaticSymlinkOutsideRootRefused(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "www")
	if err := os.MkdirAll(filepath.Join(root, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secret.txt"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "sub", "in.txt"), []byte("inside"), 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"out.txt": "../secret.txt", "outdir": "..", "in.txt": "sub/in.txt"} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	_, ts := testServer(t, Options{DocumentRoot: root})
	for path, want := range map[string]int{"/out.txt": 404, "/outdir/secret.txt": 404, "/in.txt": 200, "/sub/in.txt": 200} {
		resp, body := get(t, ts.URL+path)
		if resp.StatusCode != want || strings.Contains(string(body), "secret") {
			t.Errorf("%s: %d %q, want %d", path, resp.StatusCode, body, want)
		}
	}
}

// FuzzCheckHash: any string is either refused or checkable, never a panic,
// and a refused hash never matches a password.
func FuzzCheckHash(f *testing.F) {
	for _, s := range []string{UserHash("x"), "$2a$04$un6OL4oqhvRqbCcaotmkk.wIdZ4IeEE3nvUdMp681woFRl0h3Skfa",
		"$argon2id$v=19$m=8,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA", "$argon2id$v=19$m=0,t=0,p=0$$", "sha256:", ""} {
		f.Add(s, "x")
	}
	f.Fuzz(func(t *testing.T, hash, password string) {
		if _, err := CheckHash(hash); err != nil {
			if CheckPassword(hash, password) {
				t.Fatalf("refused hash %q matches %q", hash, password)
			}
			return
		}
		if strings.HasPrefix(hash, "$2") {
			if cost, _ := bcryptCost(hash); cost > 6 {
				return // too slow to check in a fuzz loop
			}
		}
		if strings.HasPrefix(hash, "$argon2id$") {
			return // parameters from the input may be costly
		}
		_ = CheckPassword(hash, password)
	})
}

func TestChannelInfoNamesNoClient(t *testing.T) {
	s, ts := testServer(t, Options{PollTimeout: 2 * time.Second})
	poll(t, ts.URL+"/comet/channel/open/stream/secret.42")
	waitPolling(t, s, "secret.42")
	_, body := get(t, ts.URL+"/comet/channel/open")
	if strings.Contains(string(body), "secret.42") || !strings.Contains(string(body), `"subscribers":{"stardust":1}`) {
		t.Errorf("channel info: %s", body)
	}
}

func bcryptCost(hash string) (int, error) { return bcrypt.Cost([]byte(hash)) }
