package conf

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// The annotated file must say exactly the defaults, and name every key.
func TestAnnotatedFileIsTheDefaults(t *testing.T) {
	cfg, err := Load("stardust.toml")
	if err != nil {
		t.Fatalf("Load(stardust.toml): %v", err)
	}
	if want := Default(); !reflect.DeepEqual(cfg, want) {
		t.Errorf("stardust.toml differs from Default():\n got %+v\nwant %+v", cfg, want)
	}
	text, err := os.ReadFile("stardust.toml")
	if err != nil {
		t.Fatal(err)
	}
	var tmp Config
	md, err := toml.Decode(string(text), &tmp)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, k := range md.Keys() {
		have[k.String()] = true
	}
	for _, k := range allKeys(reflect.TypeOf(Config{}), "") {
		if !have[k] {
			t.Errorf("stardust.toml does not document key %q", k)
		}
	}
}

// allKeys lists the dotted TOML keys of a struct type, not descending into
// maps and slices of tables (their entries are user-named).
func allKeys(typ reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		key := prefix + f.Tag.Get("toml")
		out = append(out, key)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(Duration{}) {
			out = append(out, allKeys(f.Type, key+".")...)
		}
	}
	sort.Strings(out)
	return out
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, text string
		want       []string // substrings of the error, each required
	}{
		{"unknown top table", "[servre]\nlisten = \"x\"\n", []string{`unknown key "servre"`}},
		{"unknown key", "[server]\nlistne = \"127.0.0.1:1\"\n", []string{`unknown key "server.listne"`}},
		{"two unknown keys", "[comet]\nfoo = 1\nbar = 2\n", []string{`"comet.foo"`, `"comet.bar"`}},
		{"syntax", "[server\n", []string{"line 2"}},
		{"bad duration", "[comet]\npoll_timeout = \"soon\"\n", []string{"poll_timeout", "not a duration"}},
		{"wrong type", "[comet]\nhistory_size = \"many\"\n", []string{"history_size"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Default()
			err := Decode(&cfg, tt.text, "test.toml")
			if err == nil {
				t.Fatal("want an error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   []string // keys that must be named; empty: valid
	}{
		{"defaults", func(*Config) {}, nil},
		{"unix listen", func(c *Config) { c.Server.Listen = "unix:/run/stardust.sock" }, nil},
		{"fcgi mode", func(c *Config) { c.Server.Mode = "fcgi" }, nil},
		{"root base", func(c *Config) { c.Server.Base = "/" }, nil},
		{"bad listen", func(c *Config) { c.Server.Listen = "localhost" }, []string{"server.listen"}},
		{"bad mode", func(c *Config) { c.Server.Mode = "cgi" }, []string{"server.mode"}},
		{"bad base", func(c *Config) { c.Server.Base = "comet/" }, []string{"server.base"}},
		{"missing root", func(c *Config) { c.Server.DocumentRoot = "/no/such/dir" }, []string{"server.document_root"}},
		{"bad index", func(c *Config) { c.Server.DirectoryIndex = []string{"../x"} }, []string{"server.directory_index"}},
		{"bad proxy", func(c *Config) { c.Server.TrustedProxies = []string{"nginx"} }, []string{"server.trusted_proxies"}},
		{"cidr proxy", func(c *Config) { c.Server.TrustedProxies = []string{"10.0.0.0/8", "::1"} }, nil},
		{"zero poll", func(c *Config) { c.Comet.PollTimeout.Duration = 0 }, []string{"comet.poll_timeout"}},
		{"negative history", func(c *Config) { c.Comet.HistorySize = -1 }, []string{"comet.history_size"}},
		{"zero history ok", func(c *Config) { c.Comet.HistorySize = 0 }, nil},
		{"zero queue", func(c *Config) { c.Comet.QueueMaxMessages = 0 }, []string{"comet.queue_max_messages"}},
		{"message over body", func(c *Config) { c.Comet.MaxMessageBytes = 2 << 20 }, []string{"comet.max_message_bytes"}},
		{"zero subscriptions", func(c *Config) { c.Comet.MaxSubscriptions = 0 }, []string{"comet.max_subscriptions"}},
		{"zero channels", func(c *Config) { c.Comet.MaxChannels = -1 }, []string{"comet.max_channels"}},
		{"zero history bytes", func(c *Config) { c.Comet.MaxHistoryBytes = 0 }, []string{"comet.max_history_bytes"}},
		{"history bytes under a message", func(c *Config) { c.Comet.MaxHistoryBytes = 1000 }, []string{"comet.max_history_bytes"}},
		{"no channel rate", func(c *Config) { c.Comet.AddressChannelRate, c.Comet.AddressChannelBurst = -1, -1 }, nil},
		{"zero channel rate", func(c *Config) { c.Comet.AddressChannelRate = 0 }, []string{"comet.address_channel_rate"}},
		{"zero channel burst", func(c *Config) { c.Comet.AddressChannelBurst = 0 }, []string{"comet.address_channel_burst"}},
		{"channel burst under a request", func(c *Config) { c.Comet.AddressChannelBurst = 10 }, []string{"comet.address_channel_burst"}},
		{"api key", func(c *Config) { c.API.Key = "0123456789abcdef0123456789abcdef" }, nil},
		{"webhooks", func(c *Config) {
			c.Webhooks.URL, c.Webhooks.Secret, c.Webhooks.Events = "http://127.0.0.1:8000/hooks", "0123456789abcdef", []string{"member_added"}
		}, nil},
		{"webhooks bad", func(c *Config) {
			c.Webhooks.URL, c.Webhooks.Events, c.Webhooks.MaxQueue = "ftp://x", []string{"joined"}, 0
			c.Webhooks.Timeout.Duration = 0
		}, []string{"webhooks.url", "webhooks.secret", "webhooks.events", "webhooks.max_queue", "webhooks.timeout"}},
		{"channels", func(c *Config) {
			n, no := 0, false
			c.Channels = []Channels{{Pattern: "/chat/**", Anonymous: &no, HistorySize: &n}, {Pattern: "/stardust/live"}}
		}, nil},
		{"channels bad pattern", func(c *Config) {
			c.Channels = []Channels{{Pattern: "/ok"}, {Pattern: "/a/**/b"}, {Pattern: "chat"}}
		}, []string{"channels[1].pattern", "channels[2].pattern"}},
		{"channels negative history", func(c *Config) {
			n := -1
			c.Channels = []Channels{{Pattern: "/a", HistorySize: &n}}
		}, []string{"channels[0].history_size"}},
		{"channels history_ttl", func(c *Config) {
			c.Channels = []Channels{{Pattern: "/a", HistoryTTL: Duration{time.Minute}}}
		}, nil},
		{"channels history_ttl too short", func(c *Config) {
			c.Channels = []Channels{{Pattern: "/a", HistoryTTL: Duration{time.Millisecond}}, {Pattern: "/b", HistoryTTL: Duration{-time.Minute}}}
		}, []string{"channels[0].history_ttl", "channels[1].history_ttl"}},
		{"channels join_leave", func(c *Config) { c.Channels = []Channels{{Pattern: "/a", JoinLeave: true}} }, nil},
		{"channels join_leave with redis", func(c *Config) {
			c.Engine.Type = "redis"
			c.Channels = []Channels{{Pattern: "/a", JoinLeave: true}}
		}, nil},
		{"channels presence", func(c *Config) { c.Channels = []Channels{{Pattern: "/a", Presence: true}} }, nil},
		{"channels presence with redis", func(c *Config) {
			c.Engine.Type = "redis"
			c.Channels = []Channels{{Pattern: "/a", Presence: true}}
		}, nil},
		{"api key with a space", func(c *Config) { c.API.Key = "a key" }, []string{"api.key"}},
		{"bad api allow_from", func(c *Config) { c.API.AllowFrom = []string{"backend"} }, []string{"api.allow_from"}},
		{"bad prefix", func(c *Config) { c.Bayeux.Prefix = "stardust" }, []string{"bayeux.prefix"}},
		{"bad service", func(c *Config) { c.Bayeux.Services = []string{"a/b"} }, []string{"bayeux.services"}},
		{"secret without secret", func(c *Config) { c.Bayeux.Auth.Mode = "secret" }, []string{"bayeux.auth.secret"}},
		{"bad user hash", func(c *Config) {
			c.Bayeux.Auth.Mode = "users"
			c.Bayeux.Auth.Users = map[string]string{"bob": "plain"}
		}, []string{"bayeux.auth.users"}},
		{"bad acl", func(c *Config) { c.Bayeux.ACL = []ACL{{Channel: "chat"}} }, []string{"bayeux.acl[0].channel"}},
		{"user template acl", func(c *Config) {
			c.Bayeux.ACL = []ACL{{Channel: "/user/{user}/**", Subscribe: []string{"user:{user}"}},
				{Channel: "/stardust/inbox_{user}", Subscribe: []string{"user:{user}"}, Publish: []string{"user:admin"}}}
		}, nil},
		{"malformed user template", func(c *Config) { c.Bayeux.ACL = []ACL{{Channel: "/user/{usr}/**"}} }, []string{"bayeux.acl[0]"}},
		{"user template outside a segment", func(c *Config) {
			c.Bayeux.ACL = []ACL{{Channel: "/user/{user}x/**", Subscribe: []string{"user:{user}"}}}
		}, nil},
		{"user:{user} without {user}", func(c *Config) {
			c.Bayeux.ACL = []ACL{{Channel: "/user/**", Subscribe: []string{"user:{user}"}}}
		}, []string{"bayeux.acl[0]"}},
		{"unknown who template", func(c *Config) {
			c.Bayeux.ACL = []ACL{{Channel: "/user/{user}", Subscribe: []string{"user:{name}"}}}
		}, []string{"bayeux.acl[0]"}},
		{"bad acl pattern", func(c *Config) { c.Bayeux.ACL = []ACL{{Channel: "/a/**/b"}} }, []string{"bayeux.acl[0]"}},
		{"bad engine", func(c *Config) { c.Engine.Type = "mongo" }, []string{"engine.type"}},
		{"bad level", func(c *Config) { c.Log.Level = "loud" }, []string{"log.level"}},
		{"bad format", func(c *Config) { c.Log.Format = "xml" }, []string{"log.format"}},
		{"bad metrics path", func(c *Config) { c.Metrics.Path = "metrics" }, []string{"metrics.path"}},
		{"requests to stderr", func(c *Config) { c.Log.Requests = "stderr" }, nil},
		{"requests to a file", func(c *Config) { c.Log.Requests = "/tmp/stardust-access.log" }, nil},
		{"requests in a missing dir", func(c *Config) { c.Log.Requests = "/no/such/dir/access.log" }, []string{"log.requests"}},
		{"pprof on loopback", func(c *Config) { c.Debug.Pprof = "127.0.0.1:6060" }, nil},
		{"pprof on localhost", func(c *Config) { c.Debug.Pprof = "localhost:6060" }, nil},
		{"pprof on ::1", func(c *Config) { c.Debug.Pprof = "[::1]:0" }, nil},
		{"pprof on every address", func(c *Config) { c.Debug.Pprof = ":6060" }, []string{"debug.pprof"}},
		{"pprof remote", func(c *Config) { c.Debug.Pprof = "192.0.2.1:6060" }, []string{"debug.pprof"}},
		{"pprof remote allowed", func(c *Config) {
			c.Debug.Pprof = "0.0.0.0:6060"
			c.Debug.PprofAllowRemote = true
		}, nil},
		{"pprof without port", func(c *Config) { c.Debug.Pprof = "127.0.0.1" }, []string{"debug.pprof"}},
		{"every problem listed", func(c *Config) {
			c.Server.Mode = "x"
			c.Log.Format = "y"
			c.Comet.HistorySize = -5
		}, []string{"server.mode", "log.format", "comet.history_size"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.change(&c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want errors naming %v, got none", tt.want)
			}
			for _, k := range tt.want {
				if !strings.Contains(err.Error(), k+":") {
					t.Errorf("error %q does not name %q", err, k)
				}
			}
		})
	}
}

func TestDurationText(t *testing.T) {
	var d Duration
	if err := d.UnmarshalText([]byte("1m30s")); err != nil || d.Seconds() != 90 {
		t.Fatalf("got %v, %v", d, err)
	}
	if b, _ := d.MarshalText(); string(b) != "1m30s" {
		t.Errorf("MarshalText = %q", b)
	}
	if err := d.UnmarshalText([]byte("90")); err == nil {
		t.Error("a bare number must be rejected: units are required in the file")
	}
}

// The [auth] section: each problem names its key.
func TestAuthValidation(t *testing.T) {
	dir := t.TempDir()
	pub, _, _ := ed25519.GenerateKey(nil)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	keyFile := filepath.Join(dir, "app.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("junk"), 0o600)
	tests := []struct {
		name   string
		change func(*AppAuth)
		want   string // the key named; "": valid
	}{
		{"everything", func(a *AppAuth) {
			a.TokenHMACSecret = strings.Repeat("k", 32)
			a.TokenPublicKeys = []string{keyFile}
			a.TokenJWKSURL, a.ConnectURL = "https://login.example/jwks.json", "http://127.0.0.1/auth.php"
			a.SubscribeURL, a.PublishURL = "http://127.0.0.1/sub", "http://127.0.0.1:8080/pub?x=1"
			a.ForwardHeaders = []string{"Cookie", "X-Tenant"}
		}, ""},
		{"short secret", func(a *AppAuth) { a.TokenHMACSecret = "secret" }, "auth.token_hmac_secret"},
		{"missing key file", func(a *AppAuth) { a.TokenPublicKeys = []string{filepath.Join(dir, "none.pem")} }, "auth.token_public_keys"},
		{"not a PEM file", func(a *AppAuth) { a.TokenPublicKeys = []string{filepath.Join(dir, "junk.pem")} }, "auth.token_public_keys"},
		{"relative connect_url", func(a *AppAuth) { a.ConnectURL = "/auth.php" }, "auth.connect_url"},
		{"ftp subscribe_url", func(a *AppAuth) { a.SubscribeURL = "ftp://app/sub" }, "auth.subscribe_url"},
		{"publish_url with a user", func(a *AppAuth) { a.PublishURL = "http://u:p@app/pub" }, "auth.publish_url"},
		{"jwks without host", func(a *AppAuth) { a.TokenJWKSURL = "https://" }, "auth.token_jwks_url"},
		{"bad cookie name", func(a *AppAuth) { a.TokenCookie = "my token" }, "auth.token_cookie"},
		{"bad header name", func(a *AppAuth) { a.ForwardHeaders = []string{"Cookie:"} }, "auth.forward_headers"},
		{"no forwarded headers", func(a *AppAuth) { a.ForwardHeaders = []string{} }, ""},
		{"zero cache_ttl", func(a *AppAuth) { a.CacheTTL.Duration = 0 }, "auth.cache_ttl"},
		{"long callback_timeout", func(a *AppAuth) { a.CallbackTimeout.Duration = time.Hour }, "auth.callback_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.change(&c.Auth)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want+":") {
				t.Fatalf("got %v; want an error naming %s", err, tt.want)
			}
		})
	}
	var c Config = Default()
	if err := Decode(&c, "[auth]\nconnect_urll = \"x\"\n", "t.toml"); err == nil || !strings.Contains(err.Error(), "auth.connect_urll") {
		t.Errorf("unknown [auth] key: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	seed, _ := os.ReadFile("stardust.toml")
	f.Add(string(seed))
	f.Add("[server]\nlisten = 1\n")
	f.Add("[comet]\npoll_timeout = \"1s\"\n[[bayeux.acl]]\nchannel=\"/a/**\"\n")
	f.Fuzz(func(t *testing.T, text string) {
		cfg := Default()
		err := Decode(&cfg, text, "fuzz.toml")
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("error does not wrap ErrInvalid: %v", err)
		}
		_ = cfg.Validate()
	})
}

func TestEngineValidation(t *testing.T) {
	tests := []struct {
		name, text string
		bad        string // the key named in the error; "" when valid
	}{
		{"memory", "[engine]\ntype = \"memory\"\n", ""},
		{"redis", "[engine]\ntype = \"redis\"\nredis_url = \"redis://127.0.0.1:6379/0\"\n", ""},
		{"rediss", "[engine]\ntype = \"redis\"\nredis_url = \"rediss://:pw@redis.example:6380/2\"\n", ""},
		{"unix", "[engine]\ntype = \"redis\"\nredis_url = \"unix:///run/redis/redis-server.sock\"\n", ""},
		{"scheme", "[engine]\ntype = \"redis\"\nredis_url = \"http://127.0.0.1:6379\"\n", "engine.redis_url"},
		{"unix without path", "[engine]\ntype = \"redis\"\nredis_url = \"unix://\"\n", "engine.redis_url"},
		{"prefix", "[engine]\ntype = \"redis\"\nredis_prefix = \"\"\n", "engine.redis_prefix"},
		{"timeout", "[engine]\ntype = \"redis\"\ntimeout = \"0s\"\n", "engine.timeout"},
		{"mirror off", "[engine]\ntype = \"redis\"\nredis_mirror = false\n", ""},
		{"type", "[engine]\ntype = \"etcd\"\n", "engine.type"},
		{"sentinels", "[engine]\ntype = \"redis\"\nredis_sentinels = [\"10.0.0.1:26379\", \"[::1]:26379\"]\nredis_master_name = \"mymaster\"\nredis_sentinel_password = \"s\"\n", ""},
		{"sentinels without a name", "[engine]\ntype = \"redis\"\nredis_sentinels = [\"10.0.0.1:26379\"]\n", "engine.redis_master_name"},
		{"name without sentinels", "[engine]\ntype = \"redis\"\nredis_master_name = \"mymaster\"\n", "engine.redis_master_name"},
		{"sentinel password without sentinels", "[engine]\ntype = \"redis\"\nredis_sentinel_password = \"s\"\n", "engine.redis_sentinel_password"},
		{"sentinel without port", "[engine]\ntype = \"redis\"\nredis_sentinels = [\"10.0.0.1\"]\nredis_master_name = \"m\"\n", "engine.redis_sentinels[0]"},
		{"sentinel bad port", "[engine]\ntype = \"redis\"\nredis_sentinels = [\"h:1\", \"h:99999\"]\nredis_master_name = \"m\"\n", "engine.redis_sentinels[1]"},
		{"sentinels with a socket", "[engine]\ntype = \"redis\"\nredis_url = \"unix:///run/redis.sock\"\nredis_sentinels = [\"h:1\"]\nredis_master_name = \"m\"\n", "engine.redis_url"},
		{"cluster", "[engine]\ntype = \"redis\"\nredis_url = \"rediss://:pw@ignored:6379/0\"\nredis_cluster = [\"10.0.0.1:6379\", \"[::1]:6380\"]\n", ""},
		{"cluster with a tag", "[engine]\ntype = \"redis\"\nredis_prefix = \"{shop}:\"\nredis_cluster = [\"10.0.0.1:6379\"]\n", ""},
		{"cluster node without port", "[engine]\ntype = \"redis\"\nredis_cluster = [\"10.0.0.1:6379\", \"10.0.0.2\"]\n", "engine.redis_cluster[1]"},
		{"cluster and sentinels", "[engine]\ntype = \"redis\"\nredis_cluster = [\"h:1\"]\nredis_sentinels = [\"h:2\"]\nredis_master_name = \"m\"\n", "engine.redis_cluster"},
		{"cluster with a socket", "[engine]\ntype = \"redis\"\nredis_url = \"unix:///run/redis.sock\"\nredis_cluster = [\"h:1\"]\n", "engine.redis_url"},
		{"cluster with database 2", "[engine]\ntype = \"redis\"\nredis_url = \"redis://h:1/2\"\nredis_cluster = [\"h:1\"]\n", "engine.redis_url"},
		{"cluster with an empty tag", "[engine]\ntype = \"redis\"\nredis_prefix = \"{}:\"\nredis_cluster = [\"h:1\"]\n", "engine.redis_prefix"},
		{"shards", "[engine]\ntype = \"redis\"\nredis_cluster = [\"h:1\"]\nredis_shards = 6\n", ""},
		{"shards without a cluster", "[engine]\ntype = \"redis\"\nredis_shards = 6\n", "engine.redis_shards"},
		{"no shard", "[engine]\ntype = \"redis\"\nredis_cluster = [\"h:1\"]\nredis_shards = 0\n", "engine.redis_shards"},
		{"too many shards", "[engine]\ntype = \"redis\"\nredis_cluster = [\"h:1\"]\nredis_shards = 257\n", "engine.redis_shards"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Default()
			if err := Decode(&cfg, tt.text, "test.toml"); err != nil {
				t.Fatal(err)
			}
			err := cfg.Validate()
			switch {
			case tt.bad == "" && err != nil:
				t.Errorf("valid engine section rejected: %v", err)
			case tt.bad != "" && (err == nil || !strings.Contains(err.Error(), tt.bad)):
				t.Errorf("got %v, want an error naming %s", err, tt.bad)
			}
		})
	}
}

func TestAPIWarnings(t *testing.T) {
	c := Default()
	if w := strings.Join(c.Warnings(), "\n"); strings.Contains(w, "api.") {
		t.Errorf("defaults warn about the API: %s", w)
	}
	c.API.Key = "short"
	c.API.AllowFrom = []string{"*"}
	w := strings.Join(c.Warnings(), "\n")
	if !strings.Contains(w, "api.key: 5 characters") || !strings.Contains(w, "api.allow_from") {
		t.Errorf("a short key open to all: %s", w)
	}
	c.API.Key = strings.Repeat("k", 32)
	c.API.AllowFrom = []string{"10.0.0.5"}
	if w := strings.Join(c.Warnings(), "\n"); strings.Contains(w, "api.") {
		t.Errorf("a long key from one host: %s", w)
	}
}

// TestBatchDelayDefaultsToZero: batching needs no timer by default (issue
// 20): comet.batch_delay is an opt-in cap, 0 unless set.
func TestBatchDelayDefaultsToZero(t *testing.T) {
	if d := Default().Comet.BatchDelay.Duration; d != 0 {
		t.Fatalf("comet.batch_delay defaults to %v, want 0", d)
	}
}
