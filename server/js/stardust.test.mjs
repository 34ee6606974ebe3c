// Unit tests of stardust.js in Node, with fetch and timers faked:
//   node --test server/js/stardust.test.mjs
// (integration/clientjs_test.go runs them; the browser tests run the rest.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import vm from "node:vm";

const source = readFileSync(new URL("./stardust.js", import.meta.url), "utf8");

// load runs stardust.js in a fresh context with the given globals and
// returns its window.
function load(globals = {}) {
  const window = { console, URLSearchParams, AbortController, URL, Promise, JSON, Math, Date, ...globals };
  window.window = window;
  vm.runInNewContext(source, window);
  return window;
}

// fakeFetch answers each call from the queue of replies: an array is a JSON
// answer, an Error a network failure; with the queue empty it never answers.
function fakeFetch(replies) {
  const calls = [];
  const fetch = (url, opts) => {
    calls.push({ url, opts, at: calls.clock });
    const next = replies.shift();
    if (next === undefined) {
      return new Promise((resolve, reject) => {
        opts?.signal?.addEventListener("abort", () => reject(new Error("aborted")));
      });
    }
    if (next instanceof Error) return Promise.reject(next);
    return Promise.resolve({ ok: true, status: 200, json: () => Promise.resolve(next) });
  };
  return { fetch, calls };
}

// fakeTimers records setTimeout delays and runs them when told.
function fakeTimers() {
  const pending = [];
  return {
    delays: [],
    setTimeout(fn, ms) { this.delays.push(ms); pending.push(fn); return pending.length; },
    clearTimeout() {},
    runAll() { while (pending.length) pending.shift()(); },
  };
}

const tick = () => new Promise((r) => setImmediate(r));

test("loop dispatches by type with * as the fallback, and polls again at once", async () => {
  const { fetch, calls } = fakeFetch([[{ type: "a", n: 1 }, { type: "b", n: 2 }, { n: 3 }], [{ type: "a", n: 4 }]]);
  const timers = fakeTimers();
  const w = load({ fetch, setTimeout: timers.setTimeout.bind(timers), clearTimeout: timers.clearTimeout });
  const got = [];
  const loop = w.Stardust.loop("/comet/channel/foo/stream/1", {
    a: (m) => got.push("a" + m.n),
    "*": (m) => got.push("*" + m.n),
  });
  for (let i = 0; i < 5; i++) await tick();
  assert.deepEqual(got, ["a1", "*2", "*3", "a4"]);
  assert.equal(calls.length, 3, "a new poll after each answer");
  assert.deepEqual(timers.delays, [], "no delay between polls after an answer");
  loop.stop();
  assert.equal(loop.running, false);
});

test("a function in place of the handlers replaces the dispatcher", async () => {
  const { fetch } = fakeFetch([[{ type: "a" }, { type: "b" }]]);
  const w = load({ fetch, setTimeout, clearTimeout });
  const batches = [];
  const loop = w.Stardust.loop("/x", (messages) => batches.push(messages.length));
  for (let i = 0; i < 3; i++) await tick();
  loop.stop();
  assert.deepEqual(batches, [2]);
});

test("after errors the loop backs off exponentially with jitter, capped, and resets after an answer", async () => {
  const replies = [new Error("down"), new Error("down"), new Error("down"), new Error("down"), new Error("down"), [], new Error("down")];
  const { fetch, calls } = fakeFetch(replies);
  const timers = fakeTimers();
  const w = load({ fetch, setTimeout: timers.setTimeout.bind(timers), clearTimeout: timers.clearTimeout });
  const states = [];
  const loop = w.Stardust.loop("/x", {}, { minDelay: 100, maxDelay: 1000, onstate: (s) => states.push(s) });
  for (let round = 0; round < 8; round++) {
    for (let i = 0; i < 3; i++) await tick();
    timers.runAll();
  }
  loop.stop();
  const caps = [100, 200, 400, 800, 1000];
  assert.equal(timers.delays.length, 6, "one wait per error: " + timers.delays);
  caps.forEach((cap, i) => {
    assert.ok(timers.delays[i] >= cap / 2 && timers.delays[i] <= cap, `wait ${i} = ${timers.delays[i]}, want ${cap / 2}..${cap}`);
  });
  assert.ok(timers.delays[5] >= 50 && timers.delays[5] <= 100, "after an answer the backoff starts again: " + timers.delays[5]);
  assert.ok(calls.length >= 7);
  assert.ok(states.includes("error") && states.includes("polling") && states.at(-1) === "stopped");
});

test("stop aborts the poll in flight and polls no more", async () => {
  const { fetch, calls } = fakeFetch([]);
  const w = load({ fetch, setTimeout, clearTimeout });
  const loop = w.Stardust.loop("/x", {});
  await tick();
  assert.equal(calls.length, 1);
  loop.stop();
  assert.equal(calls[0].opts.signal.aborted, true);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(calls.length, 1);
});

test("the jQuery $.ev of the Perl Stardust: loop, stop, and loop(url) keeping the handlers", async () => {
  const { fetch, calls } = fakeFetch([[{ type: "t" }], [{ type: "t" }]]);
  const jQuery = {};
  const w = load({ fetch, setTimeout, clearTimeout, jQuery });
  assert.equal(typeof jQuery.ev.loop, "function");
  assert.equal(typeof jQuery.ev.stop, "function");
  const got = [];
  jQuery.ev.loop("/comet/channel/foo/1", { t: () => got.push(1) });
  await tick();
  await tick();
  jQuery.ev.stop();
  jQuery.ev.loop("/comet/channel/bar/1"); // no handlers: the previous ones
  await tick();
  await tick();
  jQuery.ev.stop();
  assert.deepEqual(got, [1, 1]);
  assert.equal(calls.at(-1).url, "/comet/channel/bar/1");
  assert.equal(w.Stardust.version, jQuery.ev.stardust);
});

test("publish posts m= fields and rejects with the server's error", async () => {
  const posted = [];
  const fetch = (url, opts) => {
    posted.push({ url, body: opts.body.toString() });
    const ok = posted.length === 1;
    return Promise.resolve({ ok, status: ok ? 200 : 400, json: () => Promise.resolve(ok ? { ok: true, recipients: 2 } : { error: "m #1: invalid JSON" }) });
  };
  const w = load({ fetch, setTimeout, clearTimeout });
  w.Stardust.base = "/comet";
  const answer = await w.Stardust.publish(["a", "b"], [{ type: "x" }, { type: "y" }]);
  assert.equal(answer.recipients, 2);
  assert.equal(posted[0].url, "/comet/channel/a+b");
  assert.equal(posted[0].body, "m=%7B%22type%22%3A%22x%22%7D&m=%7B%22type%22%3A%22y%22%7D");
  await assert.rejects(w.Stardust.publish("a", { type: "x" }), /invalid JSON/);
});

test("Bayeux channel patterns", () => {
  const w = load({ fetch: () => {}, setTimeout, clearTimeout });
  const m = w.Stardust.matches;
  for (const [pattern, channel, want] of [
    ["/a/b", "/a/b", true],
    ["/a/*", "/a/b", true],
    ["/a/*", "/a/b/c", false],
    ["/a/*", "/a", false],
    ["/a/**", "/a/b", true],
    ["/a/**", "/a/b/c", true],
    ["/a/**", "/a", false],
    ["/a/**", "/ab/c", false],
    ["/*", "/a", true],
    ["/**", "/a/b", true],
  ]) {
    assert.equal(m(pattern, channel), want, `${pattern} ~ ${channel}`);
  }
});

test("loop sends the token as a Bearer header and asks the function again after a 401", async () => {
  const calls = [];
  const answers = [{ status: 200, body: [] }, { status: 401, body: { error: "identity expired" } }, { status: 200, body: [{ n: 1 }] }];
  const fetch = (url, opts) => {
    calls.push(opts.headers && opts.headers.Authorization);
    const a = answers.shift();
    if (!a) return new Promise(() => {});
    return Promise.resolve({ ok: a.status === 200, status: a.status, json: () => Promise.resolve(a.body) });
  };
  const timers = fakeTimers();
  const w = load({ fetch, setTimeout: timers.setTimeout.bind(timers), clearTimeout: timers.clearTimeout });
  let minted = 0;
  const got = [];
  const loop = w.Stardust.loop("/comet/channel/inbox_42/stream/1", (ms) => got.push(...ms), { token: () => Promise.resolve("t" + ++minted) });
  for (let round = 0; round < 4; round++) {
    for (let i = 0; i < 4; i++) await tick();
    timers.runAll();
  }
  loop.stop();
  assert.deepEqual(calls.slice(0, 3), ["Bearer t1", "Bearer t1", "Bearer t2"], "a fresh token after the 401 only");
  assert.equal(got.length, 1);

  const plain = [];
  const w2 = load({ fetch: (url, opts) => { plain.push(opts.headers); return new Promise(() => {}); }, setTimeout, clearTimeout });
  const l2 = w2.Stardust.loop("/x", {}, { token: "fixed" });
  await tick();
  l2.stop();
  assert.equal(plain[0].Authorization, "Bearer fixed");
  const l3 = w2.Stardust.loop("/x", {});
  await tick();
  l3.stop();
  assert.equal(plain[1], undefined, "no token, no header");
});

test("events sends the token as ?token= and opens anew with a fresh one after an expired event", async () => {
  const sources = [];
  class FakeEventSource {
    constructor(url) { this.url = url; this.readyState = 0; this.listeners = {}; sources.push(this); }
    addEventListener(type, fn) { this.listeners[type] = fn; }
    close() { this.readyState = 2; }
  }
  const w = load({ EventSource: FakeEventSource, fetch: () => {}, setTimeout, clearTimeout });
  let minted = 0;
  const stream = w.Stardust.events("inbox_42", {}, { base: "/comet", token: () => "t" + ++minted });
  for (let i = 0; i < 3; i++) await tick();
  assert.equal(sources.length, 1);
  assert.equal(sources[0].url, "/comet/channel/inbox_42/events?token=t1");
  sources[0].listeners.expired({});
  await new Promise((r) => setTimeout(r, 10));
  for (let i = 0; i < 3; i++) await tick();
  stream.stop();
  assert.equal(sources.length, 2);
  assert.equal(sources[0].readyState, 2, "the expired stream is closed");
  assert.equal(sources[1].url, "/comet/channel/inbox_42/events?token=t2");
});

test("bayeux sends the token as the handshake's ext.token, and a fresh one after a 402", async () => {
  const sent = [];
  let n = 0;
  const fetch = (url, opts) => {
    const batch = JSON.parse(opts.body);
    sent.push(batch);
    const m = batch[0];
    let reply;
    if (m.channel === "/meta/handshake") reply = { channel: m.channel, id: m.id, successful: true, clientId: "c" + ++n, version: "1.0", supportedConnectionTypes: ["long-polling"], advice: { reconnect: "retry", interval: 0 } };
    else if (m.channel === "/meta/connect" && m.clientId === "c1") reply = { channel: m.channel, id: m.id, successful: false, error: "402:c1:identity expired", advice: { reconnect: "handshake", interval: 0 } };
    else return new Promise(() => {}); // the new session's connect is held
    return Promise.resolve({ ok: true, status: 200, json: () => Promise.resolve([reply]) });
  };
  const w = load({ fetch, setTimeout, clearTimeout });
  let minted = 0;
  const b = w.Stardust.bayeux("http://example.test/comet/bayeux", { transports: ["long-polling"], ext: { app: 1 }, token: () => Promise.resolve("t" + ++minted) });
  await b.handshake();
  for (let i = 0; i < 10; i++) await tick();
  const handshakes = sent.filter((batch) => batch[0].channel === "/meta/handshake").map((batch) => batch[0].ext);
  b.closed = true;
  assert.deepEqual(handshakes, [{ app: 1, token: "t1" }, { app: 1, token: "t2" }]);
  assert.equal(b.clientId, "c2");
});

// fakeStorage is a sessionStorage that outlives a page: load it into two.
function fakeStorage() {
  const m = new Map();
  return { getItem: (k) => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, String(v)), map: m };
}

test("loop: join, leave and gap callbacks, a disconnect stops it, and a reload resumes with since=", async () => {
  const sessionStorage = fakeStorage();
  const answers = [
    [{ type: "stardust.gap", since: 1, oldest: 2 }, { type: "stardust.join", user: "ann", info: { name: "Ann" }, _ch: "/stardust/room", _ts: 5.5 }],
    [{ type: "stardust.disconnect", _ch: "/stardust/room", _ts: 6 }], // published by someone: not the server's
    [{ type: "stardust.leave", user: "ann", _ch: "/stardust/room", _ts: 7 }, { type: "stardust.disconnect" }],
  ];
  const { fetch, calls } = fakeFetch(answers);
  const w = load({ fetch, setTimeout, clearTimeout, sessionStorage });
  const got = [];
  const loop = w.Stardust.loop("/comet/channel/room/stream/1", { "*": (m) => got.push("*" + m.type) }, {
    onjoin: (m, ch) => got.push("join " + m.user + " " + m.info.name + " " + ch),
    onleave: (m, ch) => got.push("leave " + m.user + " " + ch),
    ongap: (g) => got.push("gap " + g.oldest),
    ondisconnect: () => got.push("disconnect"),
  });
  for (let i = 0; i < 12; i++) await tick();
  assert.deepEqual(got, ["gap 2", "join ann Ann /stardust/room", "*stardust.gap", "*stardust.join", "*stardust.disconnect",
    "leave ann /stardust/room", "disconnect", "*stardust.leave", "*stardust.disconnect"]);
  assert.equal(calls.length, 3, "no poll after the server's disconnect");
  assert.equal(loop.running, false);
  assert.equal(calls[0].url, "/comet/channel/room/stream/1", "no position yet");

  const again = fakeFetch([]);
  const w2 = load({ fetch: again.fetch, setTimeout, clearTimeout, sessionStorage });
  const l2 = w2.Stardust.loop("/comet/channel/room/stream/2", {});
  await tick();
  l2.stop();
  assert.equal(again.calls[0].url, "/comet/channel/room/stream/2?since=7", "the reloaded page resumes after the last message");
});

test("events: gap and disconnect events, and a reload resumes with the kept lastEventId", async () => {
  const sessionStorage = fakeStorage();
  const sources = [];
  class FakeEventSource {
    constructor(url) { this.url = url; this.listeners = {}; sources.push(this); }
    addEventListener(type, fn) { this.listeners[type] = fn; }
    close() { this.readyState = 2; }
  }
  const w = load({ EventSource: FakeEventSource, fetch: () => {}, setTimeout, clearTimeout, sessionStorage });
  const got = [];
  const stream = w.Stardust.events("room", {}, { base: "/comet", ongap: (g) => got.push("gap"), ondisconnect: () => got.push("disconnect") });
  for (let i = 0; i < 3; i++) await tick();
  sources[0].onmessage({ lastEventId: "41", data: '{"type":"x","_ch":"/stardust/room"}' });
  sources[0].listeners.gap({ data: '{"type":"stardust.gap","since":"1","oldest":"40"}' });
  sources[0].listeners.disconnect({ data: '{"type":"stardust.disconnect"}' });
  assert.deepEqual(got, ["gap", "disconnect"]);
  assert.equal(stream.running, false);
  assert.equal(sources[0].readyState, 2, "closed: no reconnecting");

  const w2 = load({ EventSource: FakeEventSource, fetch: () => {}, setTimeout, clearTimeout, sessionStorage });
  const s2 = w2.Stardust.events("room", {}, { base: "/comet" });
  for (let i = 0; i < 3; i++) await tick();
  s2.stop();
  assert.equal(sources[1].url, "/comet/channel/room/events?lastEventId=41");
});

// bayeuxServer answers handshakes offering types, and holds connects.
function bayeuxServer(types, connectReply) {
  const sent = [];
  const fetch = (url, opts) => {
    if (!opts.body) {
      sent.push({ get: url, headers: opts.headers });
      return Promise.resolve({ ok: true, status: 200, json: () => Promise.resolve({ channel: "/chat/room", users: [{ user: "ann" }], clients: 2 }) });
    }
    const batch = JSON.parse(opts.body);
    sent.push(batch);
    const m = batch[0];
    if (m.channel === "/meta/handshake") {
      return Promise.resolve({ ok: true, status: 200, json: () => Promise.resolve([{ channel: m.channel, id: m.id, successful: true, clientId: "c1",
        version: "1.0", supportedConnectionTypes: types, advice: { reconnect: "retry", interval: 0 } }]) });
    }
    if (m.channel === "/meta/connect" && connectReply) {
      const r = connectReply(m);
      if (r) return Promise.resolve({ ok: true, status: 200, json: () => Promise.resolve(r) });
    }
    return new Promise(() => {});
  };
  return { fetch, sent };
}

test("bayeux asks the server's transports first: no WebSocket where the handshake offers none", async () => {
  let sockets = 0;
  class FakeWebSocket { constructor() { sockets++; } }
  const { fetch, sent } = bayeuxServer(["long-polling", "callback-polling"]);
  const w = load({ fetch, setTimeout, clearTimeout, WebSocket: FakeWebSocket });
  const b = w.Stardust.bayeux("http://example.test/comet/bayeux");
  await b.handshake();
  b.closed = true;
  assert.equal(sockets, 0, "no WebSocket tried");
  assert.equal(b.transport, "long-polling");
  assert.deepEqual(sent[0][0].supportedConnectionTypes, ["websocket", "long-polling"]);

  class OpenWebSocket {
    constructor(url) { sockets++; this.url = url; this.readyState = 1; setTimeout(() => this.onopen(), 0); }
    send() {}
  }
  const two = bayeuxServer(["long-polling", "websocket"]);
  const w2 = load({ fetch: two.fetch, setTimeout, clearTimeout, WebSocket: OpenWebSocket });
  const b2 = w2.Stardust.bayeux("http://example.test/comet/bayeux");
  await b2.handshake();
  b2.closed = true;
  assert.equal(b2.transport, "websocket", "offered: the WebSocket is used");
  assert.equal(sockets, 1);
});

test("bayeux: join and leave callbacks from ext.presence, a disconnect by the server stops it, presence() asks as this client", async () => {
  let connects = 0;
  const { fetch, sent } = bayeuxServer(["long-polling"], (m) => {
    connects++;
    if (connects === 1) {
      return [{ channel: "/chat/room", data: { type: "stardust.join", user: "ann" }, ext: { presence: "join" } },
        { channel: "/chat/room", data: { type: "stardust.join", user: "eve" } }, // a client's publish: no ext.presence
        { channel: m.channel, id: m.id, successful: true, advice: { reconnect: "retry", interval: 0 } }];
    }
    return [{ channel: m.channel, id: m.id, successful: false, error: "402:c1:Unknown client", advice: { reconnect: "none" } }];
  });
  const w = load({ fetch, setTimeout, clearTimeout });
  const got = [];
  const b = w.Stardust.bayeux("http://example.test/comet/bayeux", {
    transports: ["long-polling"], token: "tok",
    onjoin: (m, ch) => got.push("join " + m.user + " " + ch),
    ondisconnect: (r) => got.push("disconnect " + r.error),
  });
  b.subscribe("/chat/room", (data) => got.push("data " + data.user));
  for (let i = 0; i < 30; i++) await tick();
  await new Promise((r) => setTimeout(r, 20));
  for (let i = 0; i < 10; i++) await tick();
  assert.deepEqual(got, ["join ann /chat/room", "data ann", "data eve", "disconnect 402:c1:Unknown client"]);
  assert.equal(b.state, "disconnected");
  assert.equal(sent.filter((batch) => Array.isArray(batch) && batch[0].channel === "/meta/handshake").length, 1, "no new handshake after reconnect none");

  const w2 = load({ fetch: bayeuxServer(["long-polling"]).fetch, setTimeout, clearTimeout });
  const b2 = w2.Stardust.bayeux("http://example.test/comet/bayeux", { transports: ["long-polling"], token: "tok" });
  const list = await b2.presence("/chat/room");
  b2.closed = true;
  assert.equal(list.users[0].user, "ann");
  const asked = [];
  const w3 = load({ fetch: (url, opts) => { asked.push(url, opts.headers && opts.headers.Authorization); return Promise.resolve({ ok: true, status: 200, json: () => Promise.resolve({}) }); }, setTimeout, clearTimeout });
  w3.Stardust.base = "/comet";
  await w3.Stardust.presence("room", { token: "t1", client: "c 1" });
  assert.deepEqual(asked, ["/comet/presence?channel=room&client=c%201", "Bearer t1"]);
});

test("bayeux opens a new WebSocket for the session of a new handshake", async () => {
  // The server forgets c1 (a 402 on its connect over the socket): the new
  // session c2 must not reuse c1's socket, which carries the cookie the
  // browser had when it opened (the new session is bound to the cookie of
  // its handshake).
  const sockets = [];
  class FakeWebSocket {
    constructor(url) { this.url = url; this.readyState = 1; sockets.push(this); setTimeout(() => this.onopen(), 0); }
    send(data) {
      const m = JSON.parse(data)[0];
      if (m.channel === "/meta/connect" && m.clientId === "c1") {
        const reply = [{ channel: m.channel, id: m.id, successful: false, error: "402:c1:Unknown client", advice: { reconnect: "handshake", interval: 0 } }];
        setTimeout(() => this.onmessage && this.onmessage({ data: JSON.stringify(reply) }), 0);
      }
    }
    close() { this.readyState = 3; this.closedByClient = true; }
  }
  let n = 0;
  const fetch = (url, opts) => {
    const m = JSON.parse(opts.body)[0];
    if (m.channel !== "/meta/handshake") return new Promise(() => {});
    const reply = [{ channel: m.channel, id: m.id, successful: true, clientId: "c" + ++n, version: "1.0", supportedConnectionTypes: ["long-polling", "websocket"], advice: { reconnect: "retry", interval: 0 } }];
    return Promise.resolve({ ok: true, status: 200, json: () => Promise.resolve(reply) });
  };
  const w = load({ fetch, setTimeout, clearTimeout, WebSocket: FakeWebSocket });
  const b = w.Stardust.bayeux("http://example.test/comet/bayeux");
  await b.handshake();
  for (let i = 0; i < 50 && b.clientId !== "c2"; i++) await new Promise((r) => setTimeout(r, 1));
  for (let i = 0; i < 10; i++) await tick();
  b.closed = true;
  assert.equal(b.clientId, "c2");
  assert.equal(b.transport, "websocket");
  assert.equal(sockets.length, 2, "a socket of its own for c2");
  assert.equal(sockets[0].closedByClient, true, "c1's socket closed");
  assert.notEqual(sockets[1].closedByClient, true);
});
