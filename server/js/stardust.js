/*! stardust.js 1.0.0: the browser client of Stardust for Go (MIT).
 * No dependencies and no build step: load it with a script tag from the
 * server itself, {base}/js/stardust.js, and use window.Stardust.
 *
 *   Stardust.loop(url, handlers)         long polling, as jquery.ev's $.ev.loop
 *   Stardust.events(channels, handlers)  Server-Sent Events with resume
 *   Stardust.publish(channels, messages) POST to the Stardust API; a Promise
 *   Stardust.bayeux(url, options)        a small Bayeux 1.0 client
 *   Stardust.presence(channel, options)  who is on a presence channel; a Promise
 *
 * When jQuery is on the page (loaded before this file), $.ev.loop and
 * $.ev.stop are installed too, so that a page written for the Perl Stardust
 * works with this file in place of jquery.ev.js.
 */
(function (root) {
  "use strict";

  var Stardust = { version: "1.0.0" };

  // The base path of the API: the script's own URL without /js/stardust.js,
  // so that pages need no configuration. Pages may set Stardust.base.
  Stardust.base = (function () {
    var s = root.document && root.document.currentScript;
    var m = s && s.src && /^(.*)\/js\/stardust\.js(\?.*)?$/.exec(s.src);
    return m ? m[1] : "/comet";
  })();

  // id returns a fresh client id, as jquery.ev pages made them.
  Stardust.id = function () {
    return Math.random().toString().slice(2) + "." + Date.now().toString(36);
  };

  // backoff is the delay before the attempt-th retry after an error:
  // exponential from min to max, with "equal jitter" (half fixed, half
  // random) so that clients cut off together do not come back together.
  function backoff(attempt, opts) {
    var min = opts.minDelay || 500, max = opts.maxDelay || 15000;
    var d = Math.min(max, min * Math.pow(2, Math.max(0, attempt)));
    return d / 2 + Math.random() * d / 2;
  }
  Stardust.backoff = backoff;

  function channelList(channels) {
    return Array.isArray(channels) ? channels.join("+") : String(channels);
  }

  // dispatcher turns handlers into a function of one array of messages:
  // an object dispatches each message by its type to handlers[type], else
  // to handlers["*"]; a function replaces the dispatcher and gets the array.
  function dispatcher(handlers) {
    if (typeof handlers === "function") return handlers;
    return function (messages) {
      for (var i = 0; i < messages.length; i++) {
        var m = messages[i];
        if (!m) continue;
        var h = (m.type !== undefined && handlers[m.type]) || handlers["*"];
        if (h) h(m);
      }
    };
  }

  function report(where, err) {
    if (root.console && root.console.error) root.console.error("stardust.js: " + where + ":", err);
  }

  // notice handles the server's own messages for options' callbacks:
  // onjoin(member, channel) and onleave(member, channel) on join_leave
  // channels (member: {user, info}), ongap(notice) when a resumed position
  // was older than what the server keeps (reload your state), and
  // ondisconnect(notice) when the server ended the session for good
  // (stop() has been called: no reconnecting). It returns true for a
  // disconnect. Gaps and disconnects are the server's notices, never a
  // channel's message (those have _ch), which anyone allowed to publish
  // could make look like one.
  function notice(opts, m, channel, stop) {
    var type = m && m.type, server = m && m._ch === undefined;
    try {
      if (type === "stardust.join" && opts.onjoin) opts.onjoin({ user: m.user, info: m.info }, channel);
      if (type === "stardust.leave" && opts.onleave) opts.onleave({ user: m.user, info: m.info }, channel);
      if (type === "stardust.gap" && server && opts.ongap) opts.ongap(m);
      if (type === "stardust.disconnect" && server) {
        stop();
        if (opts.ondisconnect) opts.ondisconnect(m);
        return true;
      }
    } catch (e) {
      report("a callback threw", e);
    }
    return false;
  }

  // kept reads (value undefined) or writes a position in sessionStorage,
  // so that a reloaded page resumes where it was; nothing when storage is
  // off (options.resume === false) or refused (private modes).
  function kept(opts, key, value) {
    if (opts.resume === false) return "";
    try {
      var store = root.sessionStorage;
      if (!store) return "";
      if (value === undefined) return store.getItem("stardust:" + key) || "";
      store.setItem("stardust:" + key, String(value));
    } catch (e) {}
    return "";
  }

  // parseJSON returns the value of text, or undefined (reported) if what
  // is not JSON.
  function parseJSON(text, what) {
    try {
      return JSON.parse(text);
    } catch (err) {
      report(what + " is not JSON", err);
      return undefined;
    }
  }

  // tokenSource reads options.token, the token the app gave the page
  // (issue 18): a string, or a function returning a token or a Promise of
  // one, asked again (fresh) once the server said the last one expired or
  // was refused. Resolves to "" when there is none.
  function tokenSource(opts) {
    var cached = null;
    return function (fresh) {
      var t = opts.token;
      if (typeof t !== "function") return Promise.resolve(t || "");
      if (!cached || fresh) {
        cached = Promise.resolve().then(function () { return t(); }).then(function (v) { return v || ""; });
        cached.catch(function () { cached = null; }); // a failed call is asked again next time
      }
      return cached;
    };
  }

  // --- Long polling -------------------------------------------------------

  // loop long-polls url (…/channel/A+B/stream/ID, or the Perl synopsis's
  // …/channel/A+B/ID) and hands each answer to handlers as soon as it comes,
  // then polls again at once. After an error it waits backoff(n) and tries
  // again, for ever, until stop(). options: minDelay, maxDelay (ms),
  // onstate(state, detail) with state "polling", "error" or "stopped";
  // token (see tokenSource), sent as a Bearer header, asked again after a 401;
  // onjoin, onleave, ongap, ondisconnect (see notice); resume (default true):
  // the position (the _ts of the last message) is kept in sessionStorage, and
  // a reloaded page's first poll asks for what came since (?since=).
  Stardust.loop = function (url, handlers, options) {
    var opts = options || {};
    var token = tokenSource(opts), stale = false;
    var key = "loop:" + url.replace(/\/[^\/]*$/, ""); // without the client id
    var since = kept(opts, key);
    var loop = {
      url: url,
      running: true,
      errors: 0,
      run: dispatcher(handlers || {}),
      stop: function () {
        loop.running = false;
        if (loop.abort) loop.abort.abort();
        if (loop.timer) clearTimeout(loop.timer);
        state("stopped");
      }
    };
    function state(s, detail) {
      if (opts.onstate) opts.onstate(s, detail);
    }
    function retry(err) {
      if (!loop.running) return;
      var wait = backoff(loop.errors++, opts);
      state("error", { error: err, retryIn: wait });
      loop.timer = setTimeout(poll, wait);
    }
    function poll() {
      if (!loop.running) return;
      loop.abort = typeof AbortController === "function" ? new AbortController() : null;
      var signal = loop.abort && loop.abort.signal;
      token(stale)
        .then(function (tok) {
          stale = false;
          var init = { cache: "no-store", credentials: "same-origin", signal: signal };
          if (tok) init.headers = { Authorization: "Bearer " + tok };
          var u = loop.url;
          if (since) u += (u.indexOf("?") < 0 ? "?" : "&") + "since=" + encodeURIComponent(since);
          return fetch(u, init);
        })
        .then(function (r) {
          if (r.status === 401) stale = true; // expired or refused: a fresh token for the next try
          if (!r.ok) throw new Error("HTTP " + r.status);
          return r.json();
        })
        .then(function (messages) {
          if (!loop.running) return;
          loop.errors = 0;
          since = "";
          messages = Array.isArray(messages) ? messages : [messages];
          state("polling", { messages: messages.length });
          var ended = false;
          for (var i = 0; i < messages.length; i++) {
            var m = messages[i];
            if (m && m._ts) kept(opts, key, m._ts);
            ended = notice(opts, m, m && m._ch, loop.stop) || ended;
          }
          try {
            loop.run(messages);
          } catch (e) {
            report("a handler threw", e);
          }
          if (!ended) poll();
        }, retry);
    }
    state("polling");
    poll();
    return loop;
  };

  // --- Publishing ---------------------------------------------------------

  // publish posts messages (an object or an array of objects) to channels
  // ("foo", "foo+bar" or ["foo", "bar"]) as m= form fields, which needs no
  // CORS preflight. The Promise has the server's answer ({ok, recipients…});
  // it is rejected with the server's error text on a 4xx or 5xx.
  Stardust.publish = function (channels, messages, options) {
    var base = (options && options.base) || Stardust.base;
    var list = Array.isArray(messages) ? messages : [messages];
    var body = new URLSearchParams();
    list.forEach(function (m) { body.append("m", JSON.stringify(m)); });
    return fetch(base + "/channel/" + channelList(channels), { method: "POST", body: body, credentials: "same-origin" })
      .then(function (r) {
        return r.json().then(function (answer) {
          if (!r.ok) throw new Error(answer && answer.error ? answer.error : "HTTP " + r.status);
          return answer;
        });
      });
  };

  // presence asks the server who is on channel: a Bayeux name
  // ("/chat/room") or a Stardust one ("room", under the Bayeux prefix),
  // whose [[channels]] block has presence = true. The server answers a
  // caller allowed to read the channel as for a subscription: with
  // options.token (a string; sent as a Bearer header), the app's token
  // cookie, or the identity of options.client (a session of this browser).
  // A Promise of {channel, users: [{user, info}], clients}, rejected with
  // the server's error text.
  Stardust.presence = function (channel, options) {
    var opts = options || {};
    var q = "channel=" + encodeURIComponent(channel);
    if (opts.client) q += "&client=" + encodeURIComponent(opts.client);
    var init = { cache: "no-store", credentials: "same-origin" };
    if (typeof opts.token === "string" && opts.token) init.headers = { Authorization: "Bearer " + opts.token };
    return fetch((opts.base || Stardust.base) + "/presence?" + q, init).then(function (r) {
      return r.json().then(function (answer) {
        if (!r.ok) throw new Error(answer && answer.error ? answer.error : "HTTP " + r.status);
        return answer;
      });
    });
  };

  // --- Server-Sent Events -------------------------------------------------

  // events streams channels with an EventSource and dispatches each message
  // as loop does (handlers one message at a time). The browser resumes by
  // itself after a dropped connection with Last-Event-ID; when it gives up
  // (the server refused or restarted), this opens a new stream with
  // ?lastEventId= after backoff, so nothing kept in the history is missed.
  // options: base, id (a named stream keeps its queue between
  // reconnects), minDelay, maxDelay, onstate ("open", "reconnecting", "stopped"),
  // token (see tokenSource), sent as ?token= (an EventSource sets no
  // headers; the app's HttpOnly cookie is the better place when it can),
  // asked again when the server ends the stream with an "expired" event or
  // refuses it; onjoin, onleave, ongap, ondisconnect (see notice); resume
  // (default true): lastEventId is kept in sessionStorage, so that a
  // reloaded page resumes after the last event it had.
  Stardust.events = function (channels, handlers, options) {
    var opts = options || {};
    var token = tokenSource(opts), stale = false;
    var base = opts.base || Stardust.base;
    var run = dispatcher(handlers || {});
    var es = null;
    var key = "events:" + channelList(channels);
    var stream = { lastEventId: opts.lastEventId || kept(opts, key), running: true, errors: 0 };
    function deliver(m) {
      if (notice(opts, m, m._ch, stream.stop)) return;
      try {
        run([m]);
      } catch (err) {
        report("a handler threw", err);
      }
    }
    function state(s) {
      if (opts.onstate) opts.onstate(s);
    }
    function open() {
      if (!stream.running) return;
      token(stale).then(function (tok) {
        stale = false;
        openWith(tok);
      }, function (err) {
        report("the token function failed", err);
        stream.timer = setTimeout(open, backoff(stream.errors++, opts));
      });
    }
    function openWith(tok) {
      if (!stream.running) return;
      var q = [];
      if (opts.id) q.push("id=" + encodeURIComponent(opts.id));
      if (tok) q.push("token=" + encodeURIComponent(tok));
      if (stream.lastEventId) q.push("lastEventId=" + encodeURIComponent(stream.lastEventId));
      es = new EventSource(base + "/channel/" + channelList(channels) + "/events" + (q.length ? "?" + q.join("&") : ""),
        { withCredentials: !!opts.withCredentials });
      stream.source = es;
      es.onopen = function () {
        stream.errors = 0;
        state("open");
      };
      es.onmessage = function (e) {
        if (e.lastEventId) {
          stream.lastEventId = e.lastEventId;
          kept(opts, key, e.lastEventId);
        }
        var m = parseJSON(e.data, "an event");
        if (m !== undefined) deliver(m);
      };
      ["gap", "disconnect"].forEach(function (name) { // the server's notices, as named events
        es.addEventListener(name, function (e) {
          var m = parseJSON(e.data, "a " + name + " event");
          if (m !== undefined) deliver(m);
        });
      });
      es.addEventListener("expired", function () { // the identity expired: anew with a fresh token
        es.close();
        stale = true;
        state("reconnecting");
        stream.timer = setTimeout(open, 0);
      });
      es.onerror = function () {
        state("reconnecting");
        if (es.readyState === 2) { // CLOSED: the browser gave up (perhaps a 401); start anew
          es.close();
          stale = true;
          stream.timer = setTimeout(open, backoff(stream.errors++, opts));
        }
      };
    }
    stream.stop = function () {
      stream.running = false;
      if (stream.timer) clearTimeout(stream.timer);
      if (es) es.close();
      state("stopped");
    };
    open();
    return stream;
  };

  // --- Bayeux -------------------------------------------------------------

  // bayeux returns a Bayeux 1.0 client for url ({base}/bayeux). It
  // handshakes on first use by long-polling, and then opens a WebSocket
  // only when the handshake's answer offers one (a server behind FastCGI
  // does not, and the page logs no failed WebSocket) and the browser can
  // (a refused or failed WebSocket falls back); re-handshakes and
  // re-subscribes after a 402 error or reconnect "handshake" advice;
  // stops for good when the server says reconnect "none" (the server API's
  // disconnect); retries with backoff after network errors; and sends what
  // is queued in one tick as one batch. A page that goes away (pagehide)
  // ends its session at once, so that its user's leave is not delayed.
  //
  // options: ext (handshake ext, e.g. credentials), token (see
  // tokenSource; sent as the handshake's ext.token, asked again before the
  // handshake that follows a 402, as when it expired), transports (default
  // ["websocket", "long-polling"]), minDelay, maxDelay, callTimeout (ms),
  // onstate(state) with "handshaking", "connected", "reconnecting",
  // "disconnected"; onjoin(member, channel) and onleave(member, channel)
  // for the server's join and leave notices (ext.presence) on the
  // channels subscribed to; ondisconnect(reply) when the server ends the
  // session for good; disconnectOnUnload (default true).
  Stardust.bayeux = function (url, options) {
    return new Bayeux(url, options || {});
  };

  function Bayeux(url, opts) {
    this.url = new URL(url || Stardust.base + "/bayeux", root.location && root.location.href).href;
    this.opts = opts;
    this.transports = opts.transports || ["websocket", "long-polling"];
    this.transport = null;   // "websocket" or "long-polling" once chosen
    this.clientId = null;
    this.state = "disconnected";
    this.listeners = {};     // channel pattern -> [function]
    this.pending = {};       // message id -> {resolve, reject, call}
    this.queue = [];         // outgoing, flushed as one batch
    this.nextId = 0;
    this.errors = 0;
    this.batching = 0;
    this.ws = null;
    this.wsWorked = false;
    this.ready = null;       // Promise of a successful handshake
    this.closed = false;
    this.token = tokenSource(opts);
    this.tokenNow = "";      // the token of the handshake in progress
    this.tokenStale = false; // the server refused the last one: ask again
    var self = this;
    if (opts.disconnectOnUnload !== false && root.addEventListener) {
      root.addEventListener("pagehide", function (e) {
        if (!e.persisted && self.clientId) self._leaveNow();
      });
    }
  }
  Stardust.Bayeux = Bayeux;

  // _leaveNow sends /meta/disconnect as the page goes away: over the open
  // socket, else in a request that outlives the page (keepalive).
  Bayeux.prototype._leaveNow = function () {
    var msg = JSON.stringify([{ channel: "/meta/disconnect", clientId: this.clientId, id: this._id() }]);
    this.closed = true;
    if (this.ws && this.ws.readyState === 1) {
      this.ws.send(msg);
      return;
    }
    fetch(this.url, { method: "POST", credentials: "same-origin", keepalive: true,
      headers: { "Content-Type": "application/json" }, body: msg }).catch(function () {});
  };

  Bayeux.prototype.setState = function (s) {
    if (this.state === s) return;
    this.state = s;
    if (this.opts.onstate) this.opts.onstate(s, this);
  };

  // handshake starts a session (once; later calls share it).
  Bayeux.prototype.handshake = function () {
    var self = this;
    if (self.ready) return self.ready;
    self.closed = false;
    self.setState("handshaking");
    self.ready = self._handshake().then(function (reply) {
      self.clientId = reply.clientId;
      self.errors = 0;
      self.setState("connected");
      self._connect();
      var patterns = Object.keys(self.listeners);
      if (patterns.length) {
        self._send({ channel: "/meta/subscribe", subscription: patterns }).catch(function (err) {
          report("subscribing again after a new handshake", err);
        });
      }
      return reply;
    });
    self.ready.catch(function () {}); // failures are retried; callers see them on their own promises
    return self.ready;
  };

  Bayeux.prototype._handshakeMessage = function () {
    var m = { channel: "/meta/handshake", version: "1.0", minimumVersion: "1.0",
      supportedConnectionTypes: this._wsAllowed() ? ["websocket", "long-polling"] : ["long-polling"], id: this._id() };
    if (this.opts.ext) m.ext = this.opts.ext;
    if (this.tokenNow) m.ext = Object.assign({}, this.opts.ext, { token: this.tokenNow });
    return m;
  };

  Bayeux.prototype._wsAllowed = function () {
    return typeof WebSocket === "function" && this.transports.indexOf("websocket") >= 0 && !this.wsRefused;
  };

  // _handshake tries a WebSocket first (when allowed), then long-polling,
  // retrying with backoff until a handshake succeeds or is refused for good.
  Bayeux.prototype._handshake = function () {
    var self = this;
    function attempt() {
      if (self.closed) return Promise.reject(new Error("disconnected"));
      return self.token(self.tokenStale).then(function (tok) {
        self.tokenStale = false;
        self.tokenNow = tok;
        return exchange();
      }, function (err) {
        report("the token function failed", err);
        self.setState("reconnecting");
        return self._sleep(backoff(self.errors++, self.opts)).then(attempt);
      });
    }
    // exchange handshakes by long-polling, then upgrades to a WebSocket
    // when the answer's supportedConnectionTypes offer one.
    function exchange() {
      self.transport = "long-polling";
      var tried = self._request(self._handshakeMessage()).then(function (reply) {
        var offered = reply.supportedConnectionTypes || [];
        if (!reply.successful || !self._wsAllowed() || offered.indexOf("websocket") < 0) return reply;
        return self._openSocket().then(function () {
          self.transport = "websocket";
          return reply;
        }, function () {
          if (!self.wsWorked) self.wsRefused = true; // never opened here: fall back for good
          return reply;
        });
      });
      return tried.then(function (reply) {
        if (reply.successful) return reply;
        if (/^40[12]:/.test(reply.error || "")) self.tokenStale = true;
        var err = new Error("handshake refused: " + (reply.error || "unknown error"));
        err.reply = reply;
        if ((reply.advice || {}).reconnect === "none") { // refused for good (version, ACL)
          self.closed = true;
          self.ready = null; // a later call may try again, with other options
          self.setState("disconnected");
        }
        throw err;
      }).catch(function (err) {
        if (self.closed) throw err;
        self.setState("reconnecting");
        return self._sleep(backoff(self.errors++, self.opts)).then(attempt);
      });
    }
    return attempt();
  };

  Bayeux.prototype._sleep = function (ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  };

  Bayeux.prototype._id = function () {
    return String(++this.nextId);
  };

  // _openSocket opens the WebSocket; resolves once open, rejects if it is
  // refused or closes first.
  Bayeux.prototype._openSocket = function () {
    var self = this;
    if (self.ws && self.ws.readyState === 1) return Promise.resolve(self.ws);
    return new Promise(function (resolve, reject) {
      var ws;
      try {
        ws = new WebSocket(self.url.replace(/^http/, "ws"));
      } catch (e) {
        reject(e);
        return;
      }
      var opened = false;
      ws.onopen = function () {
        opened = true;
        self.ws = ws;
        self.wsWorked = true;
        resolve(ws);
      };
      ws.onmessage = function (e) {
        var batch = parseJSON(e.data, "a WebSocket frame");
        if (batch === undefined) return;
        self._receive(Array.isArray(batch) ? batch : [batch]);
      };
      ws.onclose = function () {
        if (!opened) {
          reject(new Error("WebSocket refused"));
          return;
        }
        if (self.ws === ws) self.ws = null;
        // Whatever waited for an answer on this socket will not get one.
        self._failPending(new Error("WebSocket closed"), "socket");
      };
      ws.onerror = function () {};
    });
  };

  // _request sends one message at once (not batched) and resolves with
  // its reply. Over long-polling each request is its own POST.
  Bayeux.prototype._request = function (msg) {
    var self = this;
    if (!msg.id) msg.id = self._id();
    return new Promise(function (resolve, reject) {
      self.pending[msg.id] = { resolve: resolve, reject: reject, via: self.transport === "websocket" ? "socket" : "post" };
      self._transmit([msg]);
    });
  };

  // _send queues a message for the next batch and resolves with its reply.
  Bayeux.prototype._send = function (msg) {
    var self = this;
    if (!msg.id) msg.id = self._id();
    if (self.clientId && !msg.clientId) msg.clientId = self.clientId;
    var p = new Promise(function (resolve, reject) {
      self.pending[msg.id] = { resolve: resolve, reject: reject, via: self.transport === "websocket" ? "socket" : "post" };
    });
    self.queue.push(msg);
    if (!self.batching && !self.flushing) {
      self.flushing = true;
      Promise.resolve().then(function () {
        self.flushing = false;
        self.flush();
      });
    }
    return p;
  };

  // batch runs fn and sends every message it queued as one batch.
  Bayeux.prototype.batch = function (fn) {
    this.batching++;
    try {
      fn.call(this, this);
    } finally {
      if (--this.batching === 0) this.flush();
    }
  };

  // flush sends the queued messages now, as one batch.
  Bayeux.prototype.flush = function () {
    if (!this.queue.length || this.batching) return;
    var batch = this.queue;
    this.queue = [];
    this._transmit(batch);
  };

  // _transmit sends a batch over the current transport. Replies come
  // through _receive either way.
  Bayeux.prototype._transmit = function (batch) {
    var self = this;
    if (self.transport === "websocket") {
      if (self.ws && self.ws.readyState === 1) {
        self.ws.send(JSON.stringify(batch));
      } else {
        self._failIds(batch, new Error("WebSocket not open"));
      }
      return;
    }
    var abort = typeof AbortController === "function" ? new AbortController() : null;
    var held = batch.some(function (m) { return m.channel === "/meta/connect"; });
    if (held) self.connectAbort = abort;
    fetch(self.url, {
      method: "POST", credentials: "same-origin", cache: "no-store",
      keepalive: !held, // a leave notice sent as the page closes still goes out
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(batch), signal: abort && abort.signal
    }).then(function (r) {
      return r.json().then(function (replies) {
        if (!Array.isArray(replies)) replies = [replies];
        self._receive(replies);
        self._failIds(batch, new Error("no reply (HTTP " + r.status + ")"));
      });
    }).catch(function (err) {
      self._failIds(batch, err);
    });
  };

  Bayeux.prototype._failIds = function (batch, err) {
    for (var i = 0; i < batch.length; i++) {
      var p = this.pending[batch[i].id];
      if (p && !p.call) {
        delete this.pending[batch[i].id];
        p.reject(err);
      }
    }
  };

  Bayeux.prototype._failPending = function (err, via) {
    var self = this;
    Object.keys(self.pending).forEach(function (id) {
      var p = self.pending[id];
      if (p.via === via) {
        delete self.pending[id];
        p.reject(err);
      }
    });
  };

  // _receive handles replies and delivered messages.
  Bayeux.prototype._receive = function (batch) {
    for (var i = 0; i < batch.length; i++) {
      var m = batch[i];
      if (!m || typeof m.channel !== "string") continue;
      var p = m.id !== undefined ? this.pending[m.id] : null;
      if (p && p.call && m.channel === p.channel) {
        // A service call: first the publish's reply, then the answer
        // (data, same id), which the server sends to the caller only.
        if (m.data === undefined && m.successful) continue;
        delete this.pending[m.id];
        clearTimeout(p.timer);
        if (m.data !== undefined) p.resolve(m.data);
        else p.reject(bayeuxError(m));
        continue;
      }
      if (m.data !== undefined && m.successful === undefined) {
        this._deliver(m);
        continue;
      }
      var none = m.advice && m.advice.reconnect === "none";
      if (!none && ((m.error && /^402:/.test(m.error)) || (m.advice && m.advice.reconnect === "handshake"))) {
        if (m.error && /^402:/.test(m.error)) this.tokenStale = true; // perhaps the identity expired
        this._rehandshake();
      }
      if (p) {
        delete this.pending[m.id];
        if (m.successful || m.channel === "/meta/handshake" || m.channel === "/meta/connect") p.resolve(m);
        else p.reject(bayeuxError(m));
      }
    }
  };

  function bayeuxError(m) {
    var err = new Error(m.error || "unsuccessful " + m.channel);
    err.reply = m;
    return err;
  }

  // _deliver hands a message to every listener whose pattern matches.
  Bayeux.prototype._deliver = function (m) {
    var self = this;
    var presence = m.ext && m.ext.presence;
    if (presence === "join" || presence === "leave") notice(self.opts, m.data, m.channel, function () {});
    Object.keys(self.listeners).forEach(function (pattern) {
      if (!matches(pattern, m.channel)) return;
      self.listeners[pattern].slice().forEach(function (fn) {
        try {
          fn(m.data, m);
        } catch (e) {
          report("a listener threw", e);
        }
      });
    });
  };

  // matches applies Bayeux wildcards: /a/* one segment, /a/** any depth.
  function matches(pattern, channel) {
    if (pattern === channel) return true;
    var p = pattern.split("/"), c = channel.split("/");
    var last = p[p.length - 1];
    if (last === "**") return c.length > p.length - 1 && p.slice(0, -1).join("/") === c.slice(0, p.length - 1).join("/");
    if (last === "*") return c.length === p.length && p.slice(0, -1).join("/") === c.slice(0, -1).join("/");
    return false;
  }
  Stardust.matches = matches;

  // _connect keeps one /meta/connect outstanding, following the server's
  // advice; on network errors it retries with backoff.
  Bayeux.prototype._connect = function () {
    var self = this;
    if (self.closed || self.connecting || !self.clientId) return;
    self.connecting = true;
    var clientId = self.clientId;
    var ensure = self.transport === "websocket" ? self._openSocket() : Promise.resolve();
    ensure.then(function () {
      return self._request({ channel: "/meta/connect", clientId: clientId, connectionType: self.transport });
    }).then(function (reply) {
      self.connecting = false;
      if (clientId !== self.clientId) return; // a new session took over
      var advice = reply.advice || {};
      if (!reply.successful) {
        if (advice.reconnect === "none") return self._closeLocal(reply);
        return; // 402 and "handshake": _receive has started a new handshake
      }
      self.errors = 0;
      self.setState("connected");
      if (advice.reconnect === "none") return self._closeLocal();
      if (advice.reconnect === "handshake") return;
      setTimeout(function () { self._connect(); }, advice.interval || 0);
    }, function () {
      self.connecting = false;
      if (self.closed || clientId !== self.clientId) return;
      self.setState("reconnecting");
      setTimeout(function () { self._connect(); }, backoff(self.errors++, self.opts));
    });
  };

  // _rehandshake drops the session the server forgot and starts anew.
  Bayeux.prototype._rehandshake = function () {
    if (this.closed || !this.clientId) return;
    this.clientId = null;
    this.ready = null;
    this.connecting = false;
    if (this.connectAbort) this.connectAbort.abort();
    // A WebSocket carries the cookie the browser had when it opened, and a
    // new session is bound to the one the browser has now (its handshake
    // request's): it gets a socket of its own. (Two clients of a page that
    // handshake again at once may each be given a new cookie; a socket
    // opened before the last one could claim no new session: a 402 for
    // each, without end.)
    this._dropSocket();
    this.setState("reconnecting");
    this.handshake();
  };

  // _dropSocket closes the WebSocket and fails now what waits for an answer
  // on it; its own close event, which comes later, when a new socket may be
  // open, then touches nothing.
  Bayeux.prototype._dropSocket = function () {
    var ws = this.ws;
    if (!ws) return;
    this.ws = null;
    ws.onclose = ws.onmessage = null;
    ws.close();
    this._failPending(new Error("WebSocket closed"), "socket");
  };

  // _closeLocal ends the client; reply, when the server ended the session
  // (reconnect "none"), goes to options.ondisconnect.
  Bayeux.prototype._closeLocal = function (reply) {
    this.closed = true;
    this.clientId = null;
    this.ready = null;
    if (this.connectAbort) this.connectAbort.abort();
    if (this.ws) this.ws.close();
    this.setState("disconnected");
    if (reply && this.opts.ondisconnect) {
      try {
        this.opts.ondisconnect(reply);
      } catch (e) {
        report("ondisconnect threw", e);
      }
    }
  };

  // presence asks the server who is on channel (a presence channel this
  // page may read), as this client: a Promise of {channel, users:
  // [{user, info}], clients}.
  Bayeux.prototype.presence = function (channel) {
    var self = this;
    return self._whenReady(function () {
      return self.token(false).then(function (tok) {
        return Stardust.presence(channel, { base: self.url.replace(/\/(bayeux|cometd)\/?$/, ""), client: self.clientId, token: tok });
      });
    });
  };

  // subscribe adds fn(data, message) as a listener of channel (wildcards
  // /a/* and /a/** allowed); the Promise resolves once the server has
  // acknowledged the subscription, with a handle to unsubscribe.
  Bayeux.prototype.subscribe = function (channel, fn) {
    var self = this;
    var first = !self.listeners[channel];
    (self.listeners[channel] = self.listeners[channel] || []).push(fn);
    var handle = { channel: channel, unsubscribe: function () { return self.unsubscribe(channel, fn); } };
    return self._whenReady(function () {
      if (!first) return handle;
      return self._send({ channel: "/meta/subscribe", subscription: channel }).then(function () { return handle; }, function (err) {
        self._removeListener(channel, fn);
        throw err;
      });
    });
  };

  Bayeux.prototype._removeListener = function (channel, fn) {
    var list = this.listeners[channel];
    if (!list) return false;
    var i = fn ? list.indexOf(fn) : -1;
    if (fn && i >= 0) list.splice(i, 1);
    if (!fn || list.length === 0) {
      delete this.listeners[channel];
      return true;
    }
    return false;
  };

  // unsubscribe removes fn (or every listener) from channel and tells the
  // server once no listener is left.
  Bayeux.prototype.unsubscribe = function (channel, fn) {
    if (!this._removeListener(channel, fn) || !this.clientId) return Promise.resolve();
    return this._send({ channel: "/meta/unsubscribe", subscription: channel });
  };

  // publish sends data to channel; the Promise resolves with the server's
  // reply, or is rejected with its error.
  Bayeux.prototype.publish = function (channel, data) {
    var self = this;
    return self._whenReady(function () {
      return self._send({ channel: channel, data: data });
    });
  };

  // _whenReady runs fn at once when there is a session, so that what it
  // sends joins the current batch, else after the handshake.
  Bayeux.prototype._whenReady = function (fn) {
    if (this.clientId) {
      try {
        return Promise.resolve(fn());
      } catch (e) {
        return Promise.reject(e);
      }
    }
    return this.handshake().then(fn);
  };

  // call sends data to the service /service/NAME and resolves with the
  // data of its answer (rejected on an error or after callTimeout).
  Bayeux.prototype.call = function (service, data, timeout) {
    var self = this;
    var channel = service.charAt(0) === "/" ? service : "/service/" + service;
    return self._whenReady(function () {
      return new Promise(function (resolve, reject) {
        var id = self._id();
        var p = { resolve: resolve, reject: reject, call: true, channel: channel, via: "call" };
        p.timer = setTimeout(function () {
          delete self.pending[id];
          reject(new Error("no answer from " + channel));
        }, timeout || self.opts.callTimeout || 10000);
        self.pending[id] = p;
        self.queue.push({ channel: channel, data: data, id: id, clientId: self.clientId });
        if (!self.batching) self.flush();
      });
    });
  };

  // disconnect ends the session; the Promise resolves when the server has
  // answered (or at once if there was no session).
  Bayeux.prototype.disconnect = function () {
    var self = this;
    if (!self.clientId) {
      self._closeLocal();
      return Promise.resolve();
    }
    var done = self._send({ channel: "/meta/disconnect" });
    self.flush();
    return done.catch(function () {}).then(function () { self._closeLocal(); });
  };

  // --- jquery.ev compatibility ---------------------------------------------

  // installJQuery gives jQuery the $.ev of the Perl Stardust's jquery.ev.js:
  // $.ev.loop(url, handlers) and $.ev.stop(), one loop at a time;
  // $.ev.loop(url) with no handlers keeps the previous ones.
  function installJQuery($) {
    if (!$ || ($.ev && $.ev.stardust)) return;
    var ev = {
      stardust: Stardust.version,
      handlers: {},
      current: null,
      run: null,
      loop: function (url, handlers) {
        if (handlers) {
          if (typeof handlers === "function") ev.run = handlers;
          else {
            ev.handlers = handlers;
            ev.run = null;
          }
        }
        ev.stop();
        ev.current = Stardust.loop(url, function (messages) {
          (ev.run || dispatcher(ev.handlers))(messages);
        });
        return ev.current;
      },
      stop: function () {
        if (ev.current) ev.current.stop();
        ev.current = null;
      }
    };
    $.ev = ev;
  }
  Stardust.installJQuery = installJQuery;
  installJQuery(root.jQuery);
  if (!root.jQuery && root.addEventListener) {
    root.addEventListener("DOMContentLoaded", function () { installJQuery(root.jQuery); });
  }

  root.Stardust = Stardust;
})(typeof window !== "undefined" ? window : this);
