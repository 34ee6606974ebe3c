// Package conf reads and checks Stardust's TOML configuration.
//
// The order of precedence is: the defaults of Default, then the file given to
// Load, then command-line flags (applied by cmd/stardust). Unknown keys are an
// error that names the key. The annotated file conf/stardust.toml beside this
// package documents every key with its default; a test keeps the two in step.
package conf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/stardust-go/stardust/auth"
	"github.com/stardust-go/stardust/fcgi"
	"github.com/stardust-go/stardust/server"
)

// ErrInvalid is wrapped by every configuration problem Validate and Load report.
var ErrInvalid = errors.New("conf: invalid configuration")

// Duration is a time.Duration written in TOML as a string such as "30s" or "1m30s".
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("not a duration like \"30s\": %q", text)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// Config is the whole configuration. The zero value is not useful: start from Default.
type Config struct {
	Server  Server  `toml:"server"`
	Comet   Comet   `toml:"comet"`
	Bayeux  Bayeux  `toml:"bayeux"`
	Auth    AppAuth `toml:"auth"`
	Engine  Engine  `toml:"engine"`
	Log     Log     `toml:"log"`
	Metrics Metrics `toml:"metrics"`
	API     API     `toml:"api"`
	// Webhooks POST channel and member events to the site's back end.
	Webhooks Webhooks `toml:"webhooks"`
	Debug    Debug    `toml:"debug"`
	// Channels are the [[channels]] blocks: per channel pattern rules,
	// the first matching block deciding (server.ChannelRule).
	Channels []Channels `toml:"channels"`
}

// Channels is one [[channels]] block: the rules of the channels matching
// Pattern (Bayeux form, wildcards as in [[bayeux.acl]]; a Stardust channel
// NAME is {bayeux.prefix}/NAME). Channels no block matches keep the
// defaults: comet.history_size, anonymous clients allowed.
type Channels struct {
	Pattern string `toml:"pattern"`
	// Presence serves the server API's presence and presence_stats for
	// the matching channels (both engines; with Redis across processes).
	Presence bool `toml:"presence"`
	// JoinLeave publishes stardust.join and stardust.leave on the matching
	// channels as users come and go, once per user (both engines; with
	// Redis across processes).
	JoinLeave bool `toml:"join_leave"`
	// HistorySize is the messages kept per matching channel; nil (unset)
	// keeps comet.history_size, 0 keeps none.
	HistorySize *int `toml:"history_size"`
	// HistoryTTL: messages older than this are not returned by history
	// or recovery, and are dropped; 0 (unset) keeps them as long as
	// history_size allows.
	HistoryTTL Duration `toml:"history_ttl"`
	// Anonymous allows clients with no user to subscribe; nil (unset) is
	// true. false: 403 on every protocol for a client without a user.
	Anonymous *bool `toml:"anonymous"`
}

// Server holds the listener, front and static-file settings.
type Server struct {
	Listen          string              `toml:"listen"`
	Mode            string              `toml:"mode"`
	Base            string              `toml:"base"`
	DocumentRoot    string              `toml:"document_root"`
	DirectoryIndex  []string            `toml:"directory_index"`
	TypeExpires     map[string]Duration `toml:"type_expires"`
	Demo            bool                `toml:"demo"`
	CORSOrigins     []string            `toml:"cors_origins"`
	TrustedProxies  []string            `toml:"trusted_proxies"`
	MaxBodyBytes    int64               `toml:"max_body_bytes"`
	ShutdownTimeout Duration            `toml:"shutdown_timeout"`
	BodyTimeout     Duration            `toml:"body_timeout"`
	RequestTimeout  Duration            `toml:"request_timeout"`
	// MaxConnections caps the connections open at once; 0 is 90% of the
	// descriptor limit less 64.
	MaxConnections int `toml:"max_connections"`
	// Takeover has long polls wait on their connection taken over from
	// Go's HTTP server, in HTTP mode (server.TakeoverListener): about half
	// the memory per waiting client, for some CPU per answer. The key's
	// name predates the word "takeover"; it is kept for existing configs.
	Takeover bool `toml:"hold_on_connection"`
	// FCGIMaxRequestsPerConn bounds the requests in flight on one FastCGI
	// connection (fcgi.Limits.PerConn); -1 for no limit. The whole front
	// carries at most MaxConnections, as HTTP mode does.
	FCGIMaxRequestsPerConn int `toml:"fcgi_max_requests_per_conn"`
}

// Comet holds the settings of the shared core: long polls, queues, history.
type Comet struct {
	PollTimeout      Duration `toml:"poll_timeout"`
	ClientTimeout    Duration `toml:"client_timeout"`
	ChannelTimeout   Duration `toml:"channel_timeout"`
	HistorySize      int      `toml:"history_size"`
	QueueMaxMessages int      `toml:"queue_max_messages"`
	QueueMaxBytes    int      `toml:"queue_max_bytes"`
	MaxMessageBytes  int      `toml:"max_message_bytes"`
	MaxClients       int      `toml:"max_clients"`
	SSEHeartbeat     Duration `toml:"sse_heartbeat"`
	SSEMaxDuration   Duration `toml:"sse_max_duration"`
	BatchDelay       Duration `toml:"batch_delay"`

	// What one client can grow (see server.Limits): subscriptions per
	// client, channels kept, history bytes of all channels.
	MaxSubscriptions int   `toml:"max_subscriptions"`
	MaxChannels      int   `toml:"max_channels"`
	MaxHistoryBytes  int64 `toml:"max_history_bytes"`

	// Per client address (see server/limits.go); -1: no limit.
	AddressMaxSessions  int     `toml:"address_max_sessions"`
	AddressSessionRate  float64 `toml:"address_session_rate"`
	AddressSessionBurst int     `toml:"address_session_burst"`
	AddressChannelRate  float64 `toml:"address_channel_rate"`
	AddressChannelBurst int     `toml:"address_channel_burst"`
	// UserMaxSessions: sessions of one user (authenticated or named by
	// the app's identity) at once; -1: no limit.
	UserMaxSessions int `toml:"user_max_sessions"`
	// MaxPublishesPerRequest bounds a Stardust publish: messages × channels.
	MaxPublishesPerRequest int `toml:"max_publishes_per_request"`
	// Who may publish through the Stardust API: IPs or CIDRs ("*" anyone),
	// and optional HTTP basic auth (AuthPass a bcrypt or argon2id hash).
	AllowFrom []string `toml:"allow_from"`
	AuthUser  string   `toml:"auth_user"`
	AuthPass  string   `toml:"auth_pass"`
}

// Bayeux holds the Bayeux (cometd) endpoint settings.
type Bayeux struct {
	Enabled              bool     `toml:"enabled"`
	Prefix               string   `toml:"prefix"`
	AnonPublish          bool     `toml:"anon_publish"`
	ConnectTimeout       Duration `toml:"connect_timeout"`
	Interval             Duration `toml:"interval"`
	ClientMaxConnections int      `toml:"client_max_connections"`
	MultiClientInterval  Duration `toml:"multi_client_interval"`
	WebSocket            bool     `toml:"websocket"`
	Services             []string `toml:"services"`
	Auth                 Auth     `toml:"auth"`
	ACL                  []ACL    `toml:"acl"`
}

// Auth says who may handshake with the Bayeux endpoint, checked from the
// handshake's ext field.
type Auth struct {
	// Mode is "none" (anyone), "secret" (ext.secret must equal Secret) or
	// "users" (ext.username and ext.password checked against Users).
	Mode   string `toml:"mode"`
	Secret string `toml:"secret"`
	// Users maps a user name to a password hash: bcrypt ("$2b$…", from
	// stardust --hash-password or htpasswd -nbB), argon2id ("$argon2id$…"),
	// or the old unsalted "sha256:<hex>" (still read; --check warns).
	Users map[string]string `toml:"users"`
}

// ACL is one rule: who may subscribe to and publish on channels matching Channel.
// Rules are tried in order; the first whose Channel matches decides.
type ACL struct {
	Channel   string   `toml:"channel"`
	Subscribe []string `toml:"subscribe"`
	Publish   []string `toml:"publish"`
}

// AppAuth is the [auth] section: identity and authorization from the app
// beside Stardust (issue 18; see auth/README.md): signed tokens and the
// app's callbacks. Empty keys leave each part off. Read by package auth.
type AppAuth struct {
	TokenHMACSecret string   `toml:"token_hmac_secret"` // HS256/384/512; 32 bytes or more
	TokenPublicKeys []string `toml:"token_public_keys"` // PEM files: RSA, ECDSA, Ed25519
	TokenIssuer     string   `toml:"token_issuer"`      // required iss when set
	TokenAudience   string   `toml:"token_audience"`    // required among aud when set
	TokenJWKSURL    string   `toml:"token_jwks_url"`    // JWKS fetched and refreshed
	TokenCookie     string   `toml:"token_cookie"`      // cookie a token is read from
	ConnectURL      string   `toml:"connect_url"`       // app says who a session is
	SubscribeURL    string   `toml:"subscribe_url"`     // app allows or refuses subscribes
	PublishURL      string   `toml:"publish_url"`       // app allows or refuses client publishes
	ForwardHeaders  []string `toml:"forward_headers"`   // request headers sent to the app
	CacheTTL        Duration `toml:"cache_ttl"`         // how long the app's answers are kept
	CallbackTimeout Duration `toml:"callback_timeout"`  // bound of each call to the app
}

// Engine selects where sessions, channels, history and queues live:
// "memory" (this process) or "redis" (shared by every process on the same
// Redis server and prefix).
type Engine struct {
	Type        string   `toml:"type"`
	RedisURL    string   `toml:"redis_url"`    // redis://host:port/db, rediss://..., unix:///path
	RedisPrefix string   `toml:"redis_prefix"` // key prefix; processes that share it share everything
	Timeout     Duration `toml:"timeout"`      // bound of each call to Redis

	// RedisSentinels, when set, are Redis Sentinel addresses (host:port)
	// asked for the master of RedisMasterName, followed through a failover;
	// redis_url then gives only the master's password, database and TLS.
	RedisSentinels        []string `toml:"redis_sentinels"`
	RedisMasterName       string   `toml:"redis_master_name"`
	RedisSentinelPassword string   `toml:"redis_sentinel_password"` // AUTH of the sentinels

	// RedisCluster, when set, are seed nodes (host:port) of a Redis
	// Cluster: the site's keys carry one hash tag (the prefix's), so they
	// live in one slot, and the Cluster's replicas take over when its
	// master dies; redis_url then gives only the password and TLS.
	RedisCluster []string `toml:"redis_cluster"`
	// RedisShards, above 1 and with RedisCluster, splits the site by a
	// channel's first segment into that many shards, each one slot (a
	// hash tag of its own) spread over the Cluster's masters, so that
	// the Cluster adds capacity (docs/scaling.md). 1, the default: one
	// slot, the keys named as before.
	RedisShards int `toml:"redis_shards"`

	// RedisMirror serves the clients this process holds (a long-polling
	// client's second poll in a row here, a WebSocket, an SSE stream) from
	// memory, fed by Redis pub/sub, and writes their cursors in batches:
	// almost no Redis work per delivery (docs/scaling.md). Off, every poll
	// reads and commits in Redis (about 10 commands).
	RedisMirror bool `toml:"redis_mirror"`
}

// Log configures logging.
type Log struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
	File   string `toml:"file"`
	// Requests is the access log, one line per request: "" (none),
	// "stderr", or a file path (appended).
	Requests string `toml:"requests"`
}

// Debug holds diagnostics that are off by default.
type Debug struct {
	// Pprof is the host:port of a net/http/pprof listener; "" for none.
	Pprof string `toml:"pprof"`
	// PprofAllowRemote lets Pprof listen on an address that is not loopback.
	PprofAllowRemote bool `toml:"pprof_allow_remote"`
}

// Metrics configures the Prometheus and health endpoints.
type Metrics struct {
	Enabled    bool   `toml:"enabled"`
	Path       string `toml:"path"`
	HealthPath string `toml:"health_path"`
	// AllowFrom says who may read the metrics, {base}/stats and pprof: IPs
	// or CIDRs ("*" anyone), the client address as the trusted proxies
	// forward it. The health check is open to all.
	AllowFrom []string `toml:"allow_from"`
}

// API configures the server API (POST {base}/api/METHOD), for the site's
// back end: publish, disconnect a user, history, channels.
type API struct {
	// Key is what a caller sends in X-API-Key (or Authorization: apikey
	// KEY). "" serves no API (404).
	Key string `toml:"key"`
	// AllowFrom says who may call it: IPs or CIDRs ("*" anyone), the client
	// address as the trusted proxies forward it. Others get 403.
	AllowFrom []string `toml:"allow_from"`
}

// Webhooks configures the webhooks (server.WebhookOptions): events POSTed
// in signed batches to the site's back end.
type Webhooks struct {
	// URL receives the POSTs; "" sends none.
	URL string `toml:"url"`
	// Secret signs each body: X-Stardust-Signature: sha256=HEX(HMAC-SHA256).
	Secret string `toml:"secret"`
	// Events are the event names sent (server.WebhookEvents).
	Events []string `toml:"events"`
	// MaxQueue bounds the events waiting to be sent; more are dropped and
	// counted.
	MaxQueue int `toml:"max_queue"`
	// Timeout bounds one POST.
	Timeout Duration `toml:"timeout"`
}

// Default returns the built-in defaults, which are also what conf/stardust.toml says.
func Default() Config {
	return Config{
		Server: Server{
			Listen:          "127.0.0.1:5742",
			Mode:            "http",
			Base:            "/comet",
			DirectoryIndex:  []string{"index.html"},
			TypeExpires:     map[string]Duration{},
			CORSOrigins:     []string{},
			TrustedProxies:  []string{"127.0.0.1", "::1"},
			MaxBodyBytes:    1 << 20,
			ShutdownTimeout: Duration{5 * time.Second},
			BodyTimeout:     Duration{20 * time.Second},
			RequestTimeout:  Duration{60 * time.Second},

			Takeover:               true,
			FCGIMaxRequestsPerConn: 8,
		},
		Comet: Comet{
			PollTimeout:      Duration{30 * time.Second},
			ClientTimeout:    Duration{60 * time.Second},
			ChannelTimeout:   Duration{time.Hour},
			HistorySize:      50,
			QueueMaxMessages: 1000,
			QueueMaxBytes:    1 << 20,
			MaxMessageBytes:  64 << 10,
			MaxClients:       100000,
			MaxSubscriptions: 128,
			MaxChannels:      100000,
			MaxHistoryBytes:  256 << 20,
			SSEHeartbeat:     Duration{15 * time.Second},
			SSEMaxDuration:   Duration{10 * time.Minute},
			BatchDelay:       Duration{0}, // no timer: a seam gathers only while it writes (issue 20)

			AddressMaxSessions:     1000,
			AddressSessionRate:     20,
			AddressSessionBurst:    200,
			AddressChannelRate:     100,
			AddressChannelBurst:    1000,
			UserMaxSessions:        100,
			MaxPublishesPerRequest: 1000,
			AllowFrom:              []string{"127.0.0.0/8", "::1"},
		},
		Bayeux: Bayeux{
			Enabled:              true,
			Prefix:               "/stardust",
			AnonPublish:          false,
			ConnectTimeout:       Duration{60 * time.Second},
			Interval:             Duration{0},
			ClientMaxConnections: 1,
			MultiClientInterval:  Duration{2 * time.Second},
			WebSocket:            true,
			Services:             []string{"echo"},
			Auth:                 Auth{Mode: "none", Users: map[string]string{}},
			ACL:                  []ACL{},
		},
		Auth: AppAuth{TokenPublicKeys: []string{}, TokenCookie: auth.DefaultTokenCookie,
			ForwardHeaders: auth.DefaultForwardHeaders(),
			CacheTTL:       Duration{auth.DefaultCacheTTL}, CallbackTimeout: Duration{auth.DefaultCallbackTimeout}},
		Engine: Engine{Type: "memory", RedisURL: "redis://127.0.0.1:6379/0", RedisPrefix: "stardust:", RedisSentinels: []string{}, RedisCluster: []string{},
			Timeout: Duration{2 * time.Second}, RedisMirror: true, RedisShards: 1},
		Log:      Log{Level: "info", Format: "text"},
		Metrics:  Metrics{Enabled: true, Path: "/metrics", HealthPath: "/health", AllowFrom: []string{"127.0.0.0/8", "::1"}},
		API:      API{AllowFrom: []string{"127.0.0.0/8", "::1"}},
		Webhooks: Webhooks{Events: slices.Clone(server.WebhookEvents), MaxQueue: 100000, Timeout: Duration{10 * time.Second}},
		Channels: []Channels{},
	}
}

// Load reads the TOML file at path over the defaults and validates the
// result. Every problem is reported, each naming its key; the error wraps
// ErrInvalid for content problems and the os error when the file cannot be read.
func Load(path string) (Config, error) {
	cfg, err := Parse(path)
	if err != nil && !errors.Is(err, ErrInvalid) {
		return cfg, err
	}
	return cfg, errors.Join(err, cfg.Validate())
}

// Parse reads the TOML file at path over the defaults without validating the
// values, so that flags can still override them; unknown keys are errors.
func Parse(path string) (Config, error) {
	cfg := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("conf: %w", err)
	}
	return cfg, Decode(&cfg, string(data), path)
}

// Decode parses TOML text over cfg (which should hold the defaults). It
// reports syntax errors with their line and every unknown key by name; it
// does not validate values (see Validate). name is used in messages only.
func Decode(cfg *Config, text, name string) error {
	md, err := toml.Decode(text, cfg)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			if pe.LastKey != "" {
				return fmt.Errorf("%w: %s: line %d: %s: %s", ErrInvalid, name, pe.Position.Line, pe.LastKey, pe.Message)
			}
			return fmt.Errorf("%w: %s: line %d: %s", ErrInvalid, name, pe.Position.Line, pe.Message)
		}
		if msg, ok := typeError(err); ok {
			return fmt.Errorf("%w: %s: %s", ErrInvalid, name, msg)
		}
		return fmt.Errorf("%w: %s: %v", ErrInvalid, name, err)
	}
	var problems []error
	for _, k := range md.Undecoded() {
		problems = append(problems, fmt.Errorf("%w: %s: unknown key %q", ErrInvalid, name, k.String()))
	}
	return errors.Join(problems...)
}

var (
	namePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	pathPattern = regexp.MustCompile(`^(/[A-Za-z0-9._~!$&'()*+,;=:@-]+)+$`)
)

// Validate checks every value and returns all problems joined, each naming its
// key and wrapping ErrInvalid; nil when the configuration is usable.
func (c *Config) Validate() error {
	var p problems
	s := &c.Server
	if s.Listen == "" {
		p.add("server.listen", "must not be empty")
	} else if err := fcgi.CheckAddr(s.Listen); err != nil {
		p.add("server.listen", "%v", err) // what the start would refuse
	}
	if s.Mode != "http" && s.Mode != "fcgi" {
		p.add("server.mode", "want \"http\" or \"fcgi\", got %q", s.Mode)
	}
	if s.Base != "/" && !pathPattern.MatchString(s.Base) {
		p.add("server.base", "want a path like \"/comet\" with no trailing slash, got %q", s.Base)
	}
	if s.DocumentRoot != "" {
		if st, err := os.Stat(s.DocumentRoot); err != nil || !st.IsDir() {
			p.add("server.document_root", "not a directory: %q", s.DocumentRoot)
		}
	}
	for _, f := range s.DirectoryIndex {
		if f == "" || strings.ContainsAny(f, "/\\") {
			p.add("server.directory_index", "want plain file names, got %q", f)
		}
	}
	for typ, d := range s.TypeExpires {
		if !strings.Contains(typ, "/") {
			p.add("server.type_expires", "want MIME types like \"text/css\" as keys, got %q", typ)
		}
		if d.Duration < 0 {
			p.add("server.type_expires", "%q: negative duration", typ)
		}
	}
	for _, tp := range s.TrustedProxies {
		if _, err := ParsePrefix(tp); err != nil {
			p.add("server.trusted_proxies", "%v", err)
		}
	}
	p.positive("server.max_body_bytes", s.MaxBodyBytes)
	p.duration("server.shutdown_timeout", s.ShutdownTimeout, time.Millisecond)
	p.duration("server.body_timeout", s.BodyTimeout, 100*time.Millisecond)
	p.duration("server.request_timeout", s.RequestTimeout, 100*time.Millisecond)
	if s.MaxConnections < 0 {
		p.add("server.max_connections", "must not be negative (0: 90%% of the descriptor limit)")
	}
	p.limit("server.fcgi_max_requests_per_conn", float64(s.FCGIMaxRequestsPerConn))

	cm := &c.Comet
	p.duration("comet.poll_timeout", cm.PollTimeout, time.Millisecond)
	p.duration("comet.client_timeout", cm.ClientTimeout, time.Second)
	p.duration("comet.channel_timeout", cm.ChannelTimeout, time.Second)
	p.duration("comet.sse_heartbeat", cm.SSEHeartbeat, 100*time.Millisecond)
	p.duration("comet.sse_max_duration", cm.SSEMaxDuration, time.Second)
	if cm.BatchDelay.Duration < 0 || cm.BatchDelay.Duration > time.Second {
		p.add("comet.batch_delay", "want 0 (off) to 1s, got %s", cm.BatchDelay.Duration)
	}
	if cm.HistorySize < 0 {
		p.add("comet.history_size", "must not be negative (0 keeps no history)")
	}
	p.positive("comet.queue_max_messages", int64(cm.QueueMaxMessages))
	p.positive("comet.queue_max_bytes", int64(cm.QueueMaxBytes))
	p.positive("comet.max_message_bytes", int64(cm.MaxMessageBytes))
	p.positive("comet.max_clients", int64(cm.MaxClients))
	p.positive("comet.max_subscriptions", int64(cm.MaxSubscriptions))
	p.positive("comet.max_channels", int64(cm.MaxChannels))
	p.positive("comet.max_history_bytes", cm.MaxHistoryBytes)
	if cm.MaxHistoryBytes > 0 && cm.MaxHistoryBytes < int64(cm.MaxMessageBytes) {
		p.add("comet.max_history_bytes", "smaller than comet.max_message_bytes (%d): no message could be kept", cm.MaxMessageBytes)
	}
	if int64(cm.MaxMessageBytes) > s.MaxBodyBytes {
		p.add("comet.max_message_bytes", "larger than server.max_body_bytes (%d)", s.MaxBodyBytes)
	}
	p.limit("comet.address_max_sessions", float64(cm.AddressMaxSessions))
	p.limit("comet.address_session_rate", cm.AddressSessionRate)
	p.limit("comet.address_session_burst", float64(cm.AddressSessionBurst))
	p.limit("comet.address_channel_rate", cm.AddressChannelRate)
	p.limit("comet.address_channel_burst", float64(cm.AddressChannelBurst))
	if cm.AddressChannelBurst > 0 && cm.AddressChannelBurst < server.MaxChannelsPerRequest {
		p.add("comet.address_channel_burst", "below %d, the channels one Stardust request may name: such a request could never add them",
			server.MaxChannelsPerRequest)
	}
	p.limit("comet.user_max_sessions", float64(cm.UserMaxSessions))
	if cm.AddressMaxSessions > cm.MaxClients {
		p.add("comet.address_max_sessions", "larger than comet.max_clients (%d)", cm.MaxClients)
	}
	p.positive("comet.max_publishes_per_request", int64(cm.MaxPublishesPerRequest))
	p.allowList("comet.allow_from", cm.AllowFrom)
	if (cm.AuthUser == "") != (cm.AuthPass == "") {
		p.add("comet.auth_pass", "comet.auth_user and comet.auth_pass go together")
	}
	if cm.AuthPass != "" {
		if _, err := server.CheckHash(cm.AuthPass); err != nil {
			p.add("comet.auth_pass", "%v", err)
		}
	}

	b := &c.Bayeux
	if !pathPattern.MatchString(b.Prefix) {
		p.add("bayeux.prefix", "want a channel prefix like \"/stardust\", got %q", b.Prefix)
	}
	p.duration("bayeux.connect_timeout", b.ConnectTimeout, time.Second)
	if b.Interval.Duration < 0 {
		p.add("bayeux.interval", "negative duration")
	}
	p.positive("bayeux.client_max_connections", int64(b.ClientMaxConnections))
	p.duration("bayeux.multi_client_interval", b.MultiClientInterval, 100*time.Millisecond)
	for _, svc := range b.Services {
		if !namePattern.MatchString(svc) {
			p.add("bayeux.services", "want plain names like \"echo\", got %q", svc)
		}
	}
	switch b.Auth.Mode {
	case "none":
	case "secret":
		if b.Auth.Secret == "" {
			p.add("bayeux.auth.secret", "must be set when bayeux.auth.mode is \"secret\"")
		}
	case "users":
		if len(b.Auth.Users) == 0 {
			p.add("bayeux.auth.users", "must list users when bayeux.auth.mode is \"users\"")
		}
		for u, h := range b.Auth.Users {
			if _, err := server.CheckHash(h); err != nil {
				p.add("bayeux.auth.users", "%q: %v", u, err)
			}
		}
	default:
		p.add("bayeux.auth.mode", "want \"none\", \"secret\" or \"users\", got %q", b.Auth.Mode)
	}
	for i, rule := range b.ACL {
		if rule.Channel == "" || rule.Channel[0] != '/' {
			p.add(fmt.Sprintf("bayeux.acl[%d].channel", i), "want a channel pattern like \"/chat/**\" or \"/user/{user}/**\", got %q", rule.Channel)
		} else if err := server.CheckACLRule(server.ACLRule{Channel: rule.Channel, Subscribe: rule.Subscribe, Publish: rule.Publish}); err != nil {
			p.add(fmt.Sprintf("bayeux.acl[%d]", i), "%v", err)
		}
	}
	c.Auth.validate(&p)
	c.validateChannels(&p)

	switch c.Engine.Type {
	case "memory":
	case "redis":
		u, err := url.Parse(c.Engine.RedisURL)
		switch {
		case err != nil:
			p.add("engine.redis_url", "%v", err)
		case u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix":
			p.add("engine.redis_url", "want redis://host:port/db, rediss://host:port/db or unix:///path, got %q", c.Engine.RedisURL)
		case u.Scheme == "unix" && u.Path == "":
			p.add("engine.redis_url", "a unix:// URL needs the socket's path, got %q", c.Engine.RedisURL)
		}
		c.Engine.validateSentinels(&p, u)
		c.Engine.validateCluster(&p, u) // engine.go
		c.Engine.validateShards(&p)
		if c.Engine.RedisPrefix == "" {
			p.add("engine.redis_prefix", "must not be empty")
		}
		if c.Engine.Timeout.Duration <= 0 {
			p.add("engine.timeout", "must be positive")
		}
	default:
		p.add("engine.type", "want \"memory\" or \"redis\", got %q", c.Engine.Type)
	}

	switch strings.ToLower(c.Log.Level) {
	case "trace", "debug", "info", "warn", "warning", "error":
	default:
		p.add("log.level", "want debug, info, warn or error, got %q", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		p.add("log.format", "want \"text\" or \"json\", got %q", c.Log.Format)
	}
	if r := c.Log.Requests; r != "" && r != "stderr" {
		if st, err := os.Stat(filepath.Dir(r)); err != nil || !st.IsDir() {
			p.add("log.requests", "want \"\", \"stderr\" or a file in an existing directory, got %q", r)
		}
	}
	if err := CheckPprof(c.Debug.Pprof, c.Debug.PprofAllowRemote); err != nil {
		p.add("debug.pprof", "%v", err)
	}
	p.allowList("metrics.allow_from", c.Metrics.AllowFrom)
	p.allowList("api.allow_from", c.API.AllowFrom)
	if strings.ContainsAny(c.API.Key, " \t\r\n") {
		p.add("api.key", "must not contain spaces or line breaks (it travels in an HTTP header)")
	}
	c.Webhooks.validate(&p)
	if c.Metrics.Enabled {
		for key, v := range map[string]string{"metrics.path": c.Metrics.Path, "metrics.health_path": c.Metrics.HealthPath} {
			if !pathPattern.MatchString(v) {
				p.add(key, "want a path like \"/metrics\", got %q", v)
			}
		}
	}
	return p.err()
}

func (w *Webhooks) validate(p *problems) {
	if w.URL != "" {
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add("webhooks.url", "want an http:// or https:// URL, got %q", w.URL)
		}
		if len(w.Secret) < 16 {
			p.add("webhooks.secret", "%d bytes: want 16 or more (openssl rand -hex 32), the app checks each POST's signature with it", len(w.Secret))
		}
	}
	for _, e := range w.Events {
		if !slices.Contains(server.WebhookEvents, e) {
			p.add("webhooks.events", "unknown event %q: want some of %s", e, strings.Join(server.WebhookEvents, ", "))
		}
	}
	if w.MaxQueue < 1 {
		p.add("webhooks.max_queue", "want 1 or more, got %d", w.MaxQueue)
	}
	if d := w.Timeout.Duration; d < 100*time.Millisecond || d > time.Minute {
		p.add("webhooks.timeout", "want 100ms to 1m, got %s", d)
	}
}

// headerToken is an HTTP header or cookie name (RFC 9110 token).
var headerToken = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")

func (a *AppAuth) validate(p *problems) {
	if n := len(a.TokenHMACSecret); n > 0 && n < auth.MinHMACSecret {
		p.add("auth.token_hmac_secret", "%d bytes: want %d or more (openssl rand -hex 32)", n, auth.MinHMACSecret)
	}
	for _, f := range a.TokenPublicKeys {
		if _, err := auth.ReadPublicKeyFile(f); err != nil {
			p.add("auth.token_public_keys", "%v", err)
		}
	}
	for key, u := range map[string]string{"auth.token_jwks_url": a.TokenJWKSURL, "auth.connect_url": a.ConnectURL,
		"auth.subscribe_url": a.SubscribeURL, "auth.publish_url": a.PublishURL} {
		if err := auth.CheckURL(u); err != nil {
			p.add(key, "%v", err)
		}
	}
	if !headerToken.MatchString(a.TokenCookie) {
		p.add("auth.token_cookie", "want a cookie name like %q, got %q", auth.DefaultTokenCookie, a.TokenCookie)
	}
	for _, h := range a.ForwardHeaders {
		if !headerToken.MatchString(h) {
			p.add("auth.forward_headers", "want header names like \"Cookie\", got %q", h)
		}
	}
	p.duration("auth.cache_ttl", a.CacheTTL, time.Second)
	if d := a.CallbackTimeout.Duration; d < 100*time.Millisecond || d > time.Minute {
		p.add("auth.callback_timeout", "want 100ms to 1m, got %s", d)
	}
}

// CheckPprof checks the address of the profiling listener: "" (off) or
// host:port on a loopback address (127.0.0.0/8, ::1, localhost), or on any
// address when allowRemote is set, since profiles show the server's memory
// and code to whoever can reach them.
func CheckPprof(addr string, allowRemote bool) error {
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return fmt.Errorf("want host:port such as \"127.0.0.1:6060\", got %q", addr)
	}
	if allowRemote {
		return nil
	}
	if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && !strings.EqualFold(host, "localhost") {
		return fmt.Errorf("%q is not a loopback address; profiles expose the server's memory: use 127.0.0.1 or set debug.pprof_allow_remote = true", addr)
	}
	return nil
}

// ParsePrefix reads an IP address or CIDR block, as used by server.trusted_proxies.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return pfx, fmt.Errorf("not an IP or CIDR: %q", s)
		}
		return pfx.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("not an IP or CIDR: %q", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

type problems []error

func (p *problems) add(key, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%w: %s: %s", ErrInvalid, key, fmt.Sprintf(format, args...)))
}

// allowList checks a list of client addresses: IPs, CIDRs or "*".
func (p *problems) allowList(key string, list []string) {
	for _, a := range list {
		if a == "*" {
			continue
		}
		if _, err := ParsePrefix(a); err != nil {
			p.add(key, "%v (or \"*\" for anyone)", err)
		}
	}
}

func (p *problems) positive(key string, v int64) {
	if v <= 0 {
		p.add(key, "must be greater than zero")
	}
}

// limit is a positive limit, or -1 for none.
func (p *problems) limit(key string, v float64) {
	if v <= 0 && v != -1 {
		p.add(key, "must be greater than zero, or -1 for no limit")
	}
}

func (p *problems) duration(key string, d Duration, least time.Duration) {
	if d.Duration < least {
		p.add(key, "must be at least %s", least)
	}
}

func (p problems) err() error {
	sort.SliceStable(p, func(i, j int) bool { return p[i].Error() < p[j].Error() })
	return errors.Join(p...)
}

// validateChannels checks the [[channels]] blocks; what this build does not
// serve yet is refused, not ignored.
func (c *Config) validateChannels(p *problems) {
	for i, ch := range c.Channels {
		key := fmt.Sprintf("channels[%d].", i)
		if ch.Pattern == "" || ch.Pattern[0] != '/' {
			p.add(key+"pattern", "want a channel pattern like \"/chat/**\" or \"/stardust/news\", got %q", ch.Pattern)
		} else if err := server.CheckChannelRule(server.ChannelRule{Pattern: ch.Pattern}); err != nil {
			p.add(key+"pattern", "%v", err)
		}
		if ch.HistorySize != nil && *ch.HistorySize < 0 {
			p.add(key+"history_size", "must be 0 (no history) or more, got %d", *ch.HistorySize)
		}
		if d := ch.HistoryTTL.Duration; d != 0 && d < time.Second {
			p.add(key+"history_ttl", "want 0 (no TTL) or at least 1s, got %s", d)
		}
	}
}
