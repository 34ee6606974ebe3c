// Shared helpers for the Bayeux client harness: output, timeouts, inboxes,
// the wire log that both client adapters feed, and the URL guard.

import { isDeepStrictEqual } from "node:util";
import { isIP } from "node:net";

// StepError is a failure attributed to one named step of a scenario.
export class StepError extends Error {
    constructor(step, message, fields) {
        super(message);
        this.step = step;
        this.fields = fields || {};
    }
}

// Reporter writes one JSON object per line: steps and the result to stdout,
// wire traces and client logs to stderr (so stdout stays machine-readable).
export class Reporter {
    constructor({ quiet = false } = {}) {
        this.quiet = quiet;
        this.started = Date.now();
        this.finished = false;
    }

    #out(obj) {
        process.stdout.write(JSON.stringify(obj) + "\n");
    }

    step(name, fields = {}) {
        this.#out({ step: name, ok: true, ms: Date.now() - this.started, ...fields });
    }

    stepFailed(name, error, fields = {}) {
        this.#out({ step: name, ok: false, ms: Date.now() - this.started, error, ...fields });
    }

    trace(obj) {
        if (!this.quiet) {
            process.stderr.write(JSON.stringify({ trace: true, ms: Date.now() - this.started, ...obj }) + "\n");
        }
    }

    log(...args) {
        if (!this.quiet) {
            process.stderr.write(args.map((a) => (typeof a === "string" ? a : safeJSON(a))).join(" ") + "\n");
        }
    }

    pass() {
        if (this.finished) return;
        this.finished = true;
        this.#out({ result: "pass", ms: Date.now() - this.started });
    }

    fail(error, step) {
        if (this.finished) return;
        this.finished = true;
        const line = { result: "fail", error: String(error), ms: Date.now() - this.started };
        if (step) line.step = step;
        this.#out(line);
    }
}

export function safeJSON(v) {
    try {
        return JSON.stringify(v);
    } catch (e) {
        return String(v);
    }
}

export const deepEqual = isDeepStrictEqual;

// withTimeout rejects with a StepError when the promise does not settle in ms.
export function withTimeout(promise, ms, step, what) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new StepError(step, `timed out after ${ms} ms waiting for ${what}`)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

// Inbox collects the messages one subscription delivered, in arrival order.
export class Inbox {
    constructor(name) {
        this.name = name;
        this.messages = [];
        this.waiters = [];
    }

    push(message) {
        this.messages.push(message);
        for (const w of this.waiters.slice()) {
            if (w.pred(this.messages)) {
                this.waiters.splice(this.waiters.indexOf(w), 1);
                w.resolve(this.messages.slice());
            }
        }
    }

    // waitUntil resolves once pred(messages) is true, or rejects after ms.
    waitUntil(pred, ms, step, what) {
        if (pred(this.messages)) return Promise.resolve(this.messages.slice());
        const p = new Promise((resolve) => this.waiters.push({ pred, resolve }));
        return withTimeout(p, ms, step, what + ` (got ${this.messages.length} on ${this.name}: ${safeJSON(this.messages.map((m) => m.data))})`);
    }

    waitCount(n, ms, step) {
        return this.waitUntil((msgs) => msgs.length >= n, ms, step, `${n} message(s) on ${this.name}`);
    }
}

// WireLog records every Bayeux message the client really put on the wire and
// every message it really read from it, with the transport that carried it.
// The scenarios use it to prove which transport was used and that every
// request got a reply.
export class WireLog {
    constructor(reporter) {
        this.reporter = reporter;
        this.out = []; // {transport, messages: [...], meta}
        this.in = []; // {transport, messages: [...], meta}
        this.notes = [];
        this.seq = 0; // orders entries across out, in and notes
    }

    sent(transport, messages, meta = {}) {
        messages = [].concat(messages);
        this.out.push({ transport, messages, meta, seq: ++this.seq });
        this.reporter.trace({ dir: "out", transport, ...meta, messages });
    }

    received(transport, messages, meta = {}) {
        messages = [].concat(messages);
        this.in.push({ transport, messages, meta, seq: ++this.seq });
        this.reporter.trace({ dir: "in", transport, ...meta, messages });
    }

    note(what, fields = {}) {
        this.notes.push({ what, ...fields, seq: ++this.seq });
        this.reporter.trace({ note: what, ...fields });
    }

    // byTransport counts requests (envelopes) and messages per transport.
    summary() {
        const s = {};
        const add = (dir, e) => {
            const t = (s[e.transport] = s[e.transport] || { requests: 0, messagesOut: 0, responses: 0, messagesIn: 0 });
            if (dir === "out") {
                t.requests++;
                t.messagesOut += e.messages.length;
            } else {
                t.responses++;
                t.messagesIn += e.messages.length;
            }
        };
        this.out.forEach((e) => add("out", e));
        this.in.forEach((e) => add("in", e));
        return s;
    }

    // transportsFor returns the set of transports that carried outgoing
    // messages matching pred.
    // transportsOut and transportsIn list the transports that carried
    // messages matching pred, counting only entries logged after seq "since".
    transportsOut(pred, since = 0) {
        const set = new Set();
        for (const e of this.out) if (e.seq > since) for (const m of e.messages) if (pred(m)) set.add(e.transport);
        return [...set];
    }

    transportsIn(pred, since = 0) {
        const set = new Set();
        for (const e of this.in) if (e.seq > since) for (const m of e.messages) if (pred(m)) set.add(e.transport);
        return [...set];
    }

    // unanswered lists outgoing messages (except /meta/connect, which may
    // legitimately still be held by the server at the end) that never got a
    // reply carrying their id and a "successful" field. With
    // requireDataless, the reply must also have no "data" unless it is a
    // meta reply: that is the only kind of reply CometD's websocket transport
    // recognises to clear its per-message timer.
    unanswered({ requireDataless = false } = {}) {
        const replies = new Map();
        for (const e of this.in) {
            for (const m of e.messages) {
                if (m && m.id !== undefined && m.successful !== undefined) {
                    const list = replies.get(String(m.id)) || [];
                    list.push(m);
                    replies.set(String(m.id), list);
                }
            }
        }
        const missing = [];
        for (const e of this.out) {
            for (const m of e.messages) {
                if (!m || m.id === undefined || m.channel === "/meta/connect") continue;
                const list = replies.get(String(m.id)) || [];
                const ok = requireDataless
                    ? list.some((r) => /^\/meta\//.test(r.channel || "") || r.data === undefined)
                    : list.length > 0;
                if (!ok) missing.push({ id: m.id, channel: m.channel, transport: e.transport, replies: list });
            }
        }
        return missing;
    }
}

// checkLoopbackURL refuses to talk to anything but this machine unless the
// caller explicitly allows it.
export function checkLoopbackURL(raw, allowRemote) {
    let u;
    try {
        u = new URL(raw);
    } catch (e) {
        throw new Error(`invalid --url ${raw}: ${e.message}`);
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") {
        throw new Error(`--url must be http: or https:, got ${u.protocol}`);
    }
    if (allowRemote) return u;
    let host = u.hostname.replace(/^\[|\]$/g, "");
    const loopback =
        host === "localhost" ||
        (isIP(host) === 4 && host.startsWith("127.")) ||
        (isIP(host) === 6 && (host === "::1" || host === "0:0:0:0:0:0:0:1"));
    if (!loopback) {
        throw new Error(`--url host ${u.hostname} is not a loopback address (pass --allow-remote to override)`);
    }
    return u;
}

// newNonce tags this run's payloads so that messages from other runs on the
// same server are never mistaken for ours.
export function newNonce() {
    return Math.random().toString(36).slice(2, 10) + Date.now().toString(36);
}
