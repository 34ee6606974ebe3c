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
