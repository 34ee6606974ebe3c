// Command stardust is the Stardust COMET server: it reads the configuration
// (defaults, then the TOML file, then flags), builds the core and serves it
// over plain HTTP or FastCGI until SIGTERM or SIGINT.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/stardust-go/stardust/auth"
	"github.com/stardust-go/stardust/conf"
	redisengine "github.com/stardust-go/stardust/engine/redis"
	"github.com/stardust-go/stardust/examples"
	"github.com/stardust-go/stardust/examples/autobot"
	"github.com/stardust-go/stardust/fcgi"
	"github.com/stardust-go/stardust/internal/connlimit"
	"github.com/stardust-go/stardust/server"
)

// version is set at build time with -ldflags "-X main.version=..."; otherwise
// it comes from the module's build information.
var version = ""

func main() {
	m := NewMain()
	err := m.ParseFlags(os.Args[1:])
	switch {
	case errors.Is(err, flag.ErrHelp), errors.Is(err, errDone):
		os.Exit(0)
	case err != nil:
		fmt.Fprintln(os.Stderr, "stardust:", err)
		os.Exit(2)
	}
	if m.CheckProxy.Spec != "" {
		os.Exit(m.CheckProxy.run(m.Stdout, m.Stderr))
	}
	if m.Check {
		for _, w := range m.Config.Warnings() {
			fmt.Fprintf(os.Stdout, "stardust: warning: %s\n", w)
		}
		fmt.Fprintf(os.Stdout, "stardust: configuration %s is ok\n", m.configName())
		os.Exit(0)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := m.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "stardust:", err)
		os.Exit(1)
	}
	select {
	case <-ctx.Done():
	case err := <-m.Failed():
		m.log.WithError(err).Error("serving failed")
	}
	stop()
	if err := m.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "stardust:", err)
		os.Exit(1)
	}
}

// errDone means the flags asked for something that is now done (--version,
// --man).
var errDone = errors.New("done")

// Main is the program: ParseFlags, then Run, then Close. Tests drive it the
// same way, with a listen address on port 0.
type Main struct {
	Config     conf.Config
	ConfigPath string
	Check      bool
	CheckProxy checkProxyOptions // --check-proxy: see checkproxy.go
	Stdin      io.Reader
	Stdout     io.Writer
	Stderr     io.Writer

	log      *logrus.Entry
	logFile  *os.File
	server   *server.Server
	listener net.Listener
	http     *http.Server
	front    *fcgi.Front
	demoBot  *autobot.Bot // the demo chat's reply bot (demo.go)
	auth     *auth.Auth   // [auth]: tokens and the app's callbacks; nil when off
	failed   chan error
	flagsSet []string // the flags that changed the configuration, as given (configName)

	accessLog     *server.AccessLog // log.requests; see debug.go
	accessLogFile *os.File
	pprof         *http.Server // debug.pprof
	pprofAddr     net.Addr
}

// NewMain returns a Main with the default configuration.
func NewMain() *Main {
	return &Main{Config: conf.Default(), Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, failed: make(chan error, 1)}
}

// configName names what was checked: the file (or the defaults), and the
// flags that changed it, so that --check -p 99999 does not blame "(defaults)".
func (m *Main) configName() string {
	name := m.ConfigPath
	if name == "" {
		name = "(defaults)"
	}
	if len(m.flagsSet) > 0 {
		name += " with " + strings.Join(m.flagsSet, " ")
	}
	return name
}

// ParseFlags reads the command line: defaults, then the config file, then the
// other flags. With --check it validates and reports every problem; with
// --version or --help it prints and returns errDone or flag.ErrHelp.
func (m *Main) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("stardust", flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	var (
		port, listen, base, timeout, docRoot, logLevel string
		fcgiMode, demo, showVersion, hashPassword      bool
	)
	fs.StringVar(&m.ConfigPath, "config", "", "TOML configuration `file`")
	fs.StringVar(&m.ConfigPath, "c", "", "short for --config")
	fs.StringVar(&port, "port", "", "HTTP `port` on the configured host (default 5742)")
	fs.StringVar(&port, "p", "", "short for --port")
	fs.StringVar(&base, "base", "", "base `path` of the API (default /comet)")
	fs.StringVar(&base, "b", "", "short for --base")
	fs.StringVar(&timeout, "timeout", "", "long-poll `hold`, e.g. 30s or 30 (default 30s)")
	fs.StringVar(&timeout, "t", "", "short for --timeout")
	fs.StringVar(&listen, "listen", "", "listen `address`: host:port or unix:/path")
	fs.BoolVar(&fcgiMode, "fcgi", false, "serve FastCGI instead of HTTP")
	fs.StringVar(&docRoot, "document-root", "", "serve static files from `dir` too")
	fs.BoolVar(&demo, "demo", false, "serve the demo pages at {base}/demo/")
	fs.StringVar(&logLevel, "log-level", "", "log `level`: debug, info, warn, error")
	fs.BoolVar(&m.Check, "check", false, "check the configuration, print every problem and exit")
	fs.BoolVar(&showVersion, "version", false, "print the version and exit")
	var showMan bool
	fs.BoolVar(&showMan, "man", false, "print the manual page stardust(1) in roff and exit")
	m.CheckProxy.register(fs)
	fs.BoolVar(&hashPassword, "hash-password", false, "read a password on stdin, print its bcrypt hash and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: stardust [flags]\n\nStardust COMET server: channels, JSON over HTTP, long polling, SSE and Bayeux.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	if showVersion {
		fmt.Fprintf(m.Stdout, "stardust %s\n", programVersion())
		return errDone
	}
	if showMan {
		if err := writeManPage(m.Stdout, fs); err != nil {
			return err
		}
		return errDone
	}
	if hashPassword {
		return m.hashPassword()
	}
	var problems []error
	if m.ConfigPath != "" {
		cfg, err := conf.Parse(m.ConfigPath)
		if err != nil && !errors.Is(err, conf.ErrInvalid) {
			return err
		}
		m.Config = cfg
		problems = append(problems, err)
	}
	c := &m.Config
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) {
		set[f.Name] = true
		if f.Name != "config" && f.Name != "c" && f.Name != "check" {
			given := "-" + map[bool]string{true: "-"}[len(f.Name) > 1] + f.Name
			if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
				given += " " + f.Value.String()
			}
			m.flagsSet = append(m.flagsSet, given)
		}
	})
	if listen != "" {
		c.Server.Listen = listen
	}
	if port != "" {
		host, _, err := net.SplitHostPort(c.Server.Listen)
		if err != nil || strings.HasPrefix(c.Server.Listen, "unix:") {
			host = "127.0.0.1"
		}
		c.Server.Listen = net.JoinHostPort(host, port)
	}
	if base != "" {
		c.Server.Base = strings.TrimRight(base, "/")
		if c.Server.Base == "" {
			c.Server.Base = "/"
		}
	}
	if timeout != "" {
		if d, err := parseSeconds(timeout); err != nil {
			problems = append(problems, fmt.Errorf("--timeout: %w", err)) // and nothing set: one error
		} else {
			c.Comet.PollTimeout.Duration = d
		}
	}
	if set["fcgi"] {
		c.Server.Mode = map[bool]string{true: "fcgi", false: "http"}[fcgiMode]
	}
	if docRoot != "" {
		c.Server.DocumentRoot = docRoot
	}
	if set["demo"] {
		c.Server.Demo = demo
	}
	if logLevel != "" {
		c.Log.Level = logLevel
	}
	if err := c.Validate(); err != nil {
		problems = append(problems, err)
	} else if _, err := serverOptions(c); err != nil {
		problems = append(problems, err)
	}
	if err := errors.Join(problems...); err != nil {
		return fmt.Errorf("configuration %s:\n%w", m.configName(), err)
	}
	return nil
}

// hashPassword reads one line (the password) from Stdin and prints its
// bcrypt hash.
func (m *Main) hashPassword() error {
	line, err := bufio.NewReader(m.Stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("--hash-password: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return errors.New("--hash-password: empty password on standard input")
	}
	h, err := server.HashPassword(pw)
	if err != nil {
		return fmt.Errorf("--hash-password: %w", err)
	}
	fmt.Fprintln(m.Stdout, h)
	return errDone
}

// parseSeconds reads a duration as "30s" or, as the Perl original took it,
// plain seconds "30".
func parseSeconds(v string) (time.Duration, error) {
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		return time.Duration(n * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("want a duration like 30s, got %q", v)
	}
	return d, nil
}

func programVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// Run opens the log and the listener, builds the core and starts serving in
// the background. Addr tells where it listens.
func (m *Main) Run() (err error) {
	if err := m.openLog(); err != nil {
		return err
	}
	opts, err := serverOptions(&m.Config)
	if err != nil {
		return err
	}
	if m.auth, err = openAuth(&m.Config.Auth, m.log.WithField("part", "auth")); err != nil {
		return err
	}
	defer func() {
		if err != nil && m.auth != nil {
			m.auth.Close()
		}
	}()
	if m.auth != nil {
		opts.Authenticator, opts.SubscribeAuthorizer, opts.PublishAuthorizer = m.auth, m.auth, m.auth
	}
	if err := m.openAccessLog(); err != nil {
		return err
	}
	if opts.Hub.Engine, err = openEngine(&m.Config, opts.Hub, m.log); err != nil {
		return err
	}
	m.server = server.New(opts, m.log)
	if m.demoBot, err = startDemo(m.Config.Server.Demo, m.server); err != nil {
		m.server.Close()
		return err
	}
	l, err := fcgi.Listen(m.Config.Server.Listen)
	if err != nil {
		m.server.Close()
		_ = m.closeAccessLog()
		return fmt.Errorf("server.listen: %w", err)
	}
	for _, w := range m.Config.Warnings() {
		m.log.Warn(w)
	}
	max := m.Config.Server.MaxConnections
	if max == 0 {
		max = connlimit.Default(connlimit.DescriptorLimit())
	}
	refusal := connlimit.HTTPRefusal
	if m.Config.Server.Mode == "fcgi" {
		refusal = nil // the web server in front sees the connection close
	}
	l = connlimit.New(l, max, refusal, func() { m.server.Incident(server.IncidentConnectionRefused, 1) })
	if err := m.startPprof(); err != nil {
		m.server.Close()
		_ = m.closeAccessLog()
		l.Close()
		return err
	}
	m.listener = l
	if m.Config.Server.Mode == "fcgi" {
		// In flight: as many as HTTP mode's connections carry at most.
		m.front = fcgi.NewLimited(m.handler(), m.log.WithField("front", "fcgi"), fcgi.Limits{
			PerConn: m.Config.Server.FCGIMaxRequestsPerConn, Total: max,
			Refused: func() { m.server.Incident(server.IncidentFCGIRefused, 1) },
		})
		go m.serve(func() error { return m.front.Serve(l) })
	} else {
		m.http = &http.Server{
			Handler:           m.handler(),
			ReadHeaderTimeout: min(10*time.Second, m.Config.Server.BodyTimeout.Duration),
			IdleTimeout:       120 * time.Second,
			ErrorLog:          nil,
		}
		// Held long polls wait off net/http's goroutine and come back
		// through hl (server.TakeoverListener), above connlimit: a connection
		// is counted once, however often it comes back.
		hl := l
		if m.Config.Server.Takeover {
			hl = server.TakeoverListener(m.http, l)
		}
		go m.serve(func() error { return m.http.Serve(hl) })
	}
	m.log.WithFields(logrus.Fields{
		"addr": l.Addr().String(), "mode": m.Config.Server.Mode, "base": m.Config.Server.Base,
		"version": programVersion(),
	}).Info("listening")
	m.announceDemo(l.Addr())
	return nil
}

func (m *Main) serve(fn func() error) {
	if err := fn(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		m.failed <- err
	}
}

// Failed delivers an error if serving stops on its own.
func (m *Main) Failed() <-chan error { return m.failed }

// Addr returns the listening address once Run has returned.
func (m *Main) Addr() net.Addr { return m.listener.Addr() }

// Close shuts down gracefully: every held long-poll is answered at once, the
// front stops accepting and waits for in-flight requests up to
// server.shutdown_timeout.
func (m *Main) Close() error {
	if m.server == nil {
		return nil
	}
	start := time.Now()
	if m.demoBot != nil {
		m.demoBot.Close()
	}
	m.server.Close()
	ctx, cancel := context.WithTimeout(context.Background(), m.Config.Server.ShutdownTimeout.Duration)
	defer cancel()
	var err error
	if m.front != nil {
		err = m.front.Shutdown(ctx)
	} else if m.http != nil {
		err = m.http.Shutdown(ctx)
	}
	m.stopPprof()
	if m.auth != nil {
		m.auth.Close() // after the requests it served: ends the key refresh
	}
	err = errors.Join(err, m.closeAccessLog())
	m.log.WithField("took", time.Since(start).Round(time.Millisecond).String()).Info("stopped")
	if m.logFile != nil {
		_ = m.logFile.Close()
	}
	return err
}

func (m *Main) openLog() error {
	lg := logrus.New()
	lg.SetOutput(m.Stderr)
	if m.Config.Log.File != "" {
		f, err := os.OpenFile(m.Config.Log.File, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return fmt.Errorf("log file: %w", err)
		}
		m.logFile = f
		lg.SetOutput(f)
	}
	level, err := logrus.ParseLevel(m.Config.Log.Level)
	if err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	lg.SetLevel(level)
	if m.Config.Log.Format == "json" {
		lg.SetFormatter(&logrus.JSONFormatter{})
	} else {
		lg.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, DisableColors: true})
	}
	m.log = logrus.NewEntry(lg)
	return nil
}

// openEngine returns the configured engine: nil for the memory engine,
// which the hub makes itself, or a connected Redis engine.
func openEngine(c *conf.Config, h server.HubOptions, log *logrus.Entry) (server.Engine, error) {
	if c.Engine.Type != "redis" {
		return nil, nil
	}
	e, err := redisengine.Open(redisOptions(c, h, log)) // NewSharded with redis_shards above 1
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	return e, nil
}

// redisOptions maps [engine] onto the Redis engine's options.
func redisOptions(c *conf.Config, h server.HubOptions, log *logrus.Entry) redisengine.Options {
	return redisengine.Options{
		URL: c.Engine.RedisURL, Prefix: c.Engine.RedisPrefix, Timeout: c.Engine.Timeout.Duration,
		Sentinels: c.Engine.RedisSentinels, MasterName: c.Engine.RedisMasterName, SentinelPassword: c.Engine.RedisSentinelPassword,
		Cluster: c.Engine.RedisCluster,
		Shards:  c.Engine.RedisShards,
		Mirror:  c.Engine.RedisMirror,
		Limits:  h.EngineLimits(),
		Log:     log.WithField("engine", "redis"),
	}
}

// serverOptions maps the configuration onto the core's options.
func serverOptions(c *conf.Config) (server.Options, error) {
	o := server.Options{
		Base:            c.Server.Base,
		Prefix:          c.Bayeux.Prefix,
		PollTimeout:     c.Comet.PollTimeout.Duration,
		ClientTimeout:   c.Comet.ClientTimeout.Duration,
		MaxBodyBytes:    c.Server.MaxBodyBytes,
		BodyTimeout:     c.Server.BodyTimeout.Duration,
		RequestTimeout:  c.Server.RequestTimeout.Duration,
		MaxMessageSize:  c.Comet.MaxMessageBytes,
		MaxPublishes:    c.Comet.MaxPublishesPerRequest,
		PublishUser:     c.Comet.AuthUser,
		PublishPassHash: c.Comet.AuthPass,
		AllowFrom:       allowList(c.Comet.AllowFrom),
		SSEHeartbeat:    c.Comet.SSEHeartbeat.Duration,
		SSEMaxDuration:  c.Comet.SSEMaxDuration.Duration,
		Hub: server.HubOptions{
			HistorySize:      c.Comet.HistorySize,
			QueueMaxMessages: c.Comet.QueueMaxMessages,
			QueueMaxBytes:    c.Comet.QueueMaxBytes,
			MaxClients:       c.Comet.MaxClients,
			MaxSubscriptions: c.Comet.MaxSubscriptions,
			MaxChannels:      c.Comet.MaxChannels,
			MaxHistoryBytes:  c.Comet.MaxHistoryBytes,
			ChannelTimeout:   c.Comet.ChannelTimeout.Duration,
			BatchDelay:       c.Comet.BatchDelay.Duration,

			AddressMaxSessions:  c.Comet.AddressMaxSessions,
			AddressSessionRate:  c.Comet.AddressSessionRate,
			AddressSessionBurst: c.Comet.AddressSessionBurst,
			AddressChannelRate:  c.Comet.AddressChannelRate,
			AddressChannelBurst: c.Comet.AddressChannelBurst,
			UserMaxSessions:     c.Comet.UserMaxSessions,
		},
		DocumentRoot:   c.Server.DocumentRoot,
		DirectoryIndex: c.Server.DirectoryIndex,
		TypeExpires:    map[string]time.Duration{},
		CORSOrigins:    c.Server.CORSOrigins,
		Version:        programVersion(),
	}
	for typ, d := range c.Server.TypeExpires {
		o.TypeExpires[typ] = d.Duration
	}
	o.Channels, o.Hub.ChannelHistory = channelRules(c)
	o.MetricsAllowFrom = allowList(c.Metrics.AllowFrom)
	o.APIKey, o.APIAllowFrom = c.API.Key, allowList(c.API.AllowFrom)
	if w := c.Webhooks; w.URL != "" {
		o.Webhooks = &server.WebhookOptions{URL: w.URL, Secret: w.Secret, Events: w.Events, MaxQueue: w.MaxQueue,
			Timeout: w.Timeout.Duration}
	}
	for _, tp := range c.Server.TrustedProxies {
		if p, err := conf.ParsePrefix(tp); err == nil {
			o.TrustedProxies = append(o.TrustedProxies, p)
		}
	}
	if c.Server.Demo {
		o.Demo = examples.Demo()
	}
	if c.Metrics.Enabled {
		o.Metrics = &server.MetricsOptions{Path: c.Metrics.Path, HealthPath: c.Metrics.HealthPath}
	}
	if c.Bayeux.Enabled {
		bo, err := bayeuxOptions(&c.Bayeux)
		if err != nil {
			return o, err
		}
		// FastCGI cannot carry a WebSocket: offering it would only make
		// clients fail once before falling back to long-polling.
		bo.WebSocket = bo.WebSocket && c.Server.Mode != "fcgi"
		if c.Bayeux.PrefixRule() < 0 {
			// No rule decides publishes to the Stardust channels: Bayeux
			// clients get the Stardust API's address list, not more.
			bo.MessageACL = server.ChainACL(server.PublishFromACL(c.Bayeux.Prefix, allowList(c.Comet.AllowFrom)), bo.MessageACL)
		}
		o.Bayeux = bo
	}
	if c.Server.Demo {
		demoOptions(&o)
	}
	return o, nil
}

// openAuth builds the identity layer from [auth], or returns nil when none
// of its keys that turn a part on is set (tokens, connect, subscribe or
// publish callbacks): then the server asks no one, as before.
func openAuth(c *conf.AppAuth, log *logrus.Entry) (*auth.Auth, error) {
	if c.TokenHMACSecret == "" && len(c.TokenPublicKeys) == 0 && c.TokenJWKSURL == "" &&
		c.ConnectURL == "" && c.SubscribeURL == "" && c.PublishURL == "" {
		return nil, nil
	}
	var secret []byte // nil when unset: []byte("") would be refused as too short
	if c.TokenHMACSecret != "" {
		secret = []byte(c.TokenHMACSecret)
	}
	a, err := auth.New(auth.Options{
		HMACSecret: secret, PublicKeyFiles: c.TokenPublicKeys, Issuer: c.TokenIssuer,
		Audience: c.TokenAudience, JWKSURL: c.TokenJWKSURL, TokenCookie: c.TokenCookie,
		ConnectURL: c.ConnectURL, SubscribeURL: c.SubscribeURL, PublishURL: c.PublishURL,
		ForwardHeaders: c.ForwardHeaders, CacheTTL: c.CacheTTL.Duration,
		CallbackTimeout: c.CallbackTimeout.Duration, Log: log,
	})
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return a, nil
}

// channelRules maps the [[channels]] blocks (validated) onto the server's
// rules, in order: the first matching block decides, so every block has a
// history rule, its own history_size or else comet.history_size.
func channelRules(c *conf.Config) ([]server.ChannelRule, []server.HistoryRule) {
	var rules []server.ChannelRule
	var hist []server.HistoryRule
	for _, ch := range c.Channels {
		anon, size := true, c.Comet.HistorySize
		if ch.Anonymous != nil {
			anon = *ch.Anonymous
		}
		if ch.HistorySize != nil {
			size = *ch.HistorySize
		}
		rules = append(rules, server.ChannelRule{Pattern: ch.Pattern, Anonymous: anon, Presence: ch.Presence, JoinLeave: ch.JoinLeave})
		hist = append(hist, server.HistoryRule{Pattern: ch.Pattern, Size: size, TTL: ch.HistoryTTL.Duration})
	}
	return rules, hist
}

// allowList reads a list of client addresses (comet.allow_from,
// metrics.allow_from), already validated: IPs, CIDRs, "*" for anyone. An
// empty list is empty, not nil, so that it allows nobody.
func allowList(list []string) []netip.Prefix {
	out := []netip.Prefix{}
	for _, a := range list {
		if a == "*" {
			out = append(out, server.Anywhere...)
		} else if p, err := conf.ParsePrefix(a); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// builtinServices are the services [bayeux] services can name.
var builtinServices = map[string]server.Service{"echo": server.EchoService}

func bayeuxOptions(c *conf.Bayeux) (*server.BayeuxOptions, error) {
	handshake, err := server.HandshakeAuth(c.Auth.Mode, c.Auth.Secret, c.Auth.Users)
	if err != nil {
		return nil, fmt.Errorf("bayeux.auth: %w", err)
	}
	rules := make([]server.ACLRule, len(c.ACL))
	for i, r := range c.ACL {
		rules[i] = server.ACLRule{Channel: r.Channel, Subscribe: r.Subscribe, Publish: r.Publish}
	}
	acl, err := server.RulesACL(rules)
	if err != nil {
		return nil, fmt.Errorf("bayeux.acl: %w", err)
	}
	services := map[string]server.Service{}
	for _, name := range c.Services {
		svc, ok := builtinServices[name]
		if !ok {
			return nil, fmt.Errorf("bayeux.services: no built-in service %q (known: echo)", name)
		}
		services[name] = svc
	}
	return &server.BayeuxOptions{
		AnonPublish:          c.AnonPublish,
		ConnectTimeout:       c.ConnectTimeout.Duration,
		Interval:             c.Interval.Duration,
		ClientMaxConnections: c.ClientMaxConnections,
		MultiClientInterval:  c.MultiClientInterval.Duration,
		WebSocket:            c.WebSocket,
		Services:             services,
		MessageACL:           server.ChainACL(handshake, acl),
	}, nil
}
