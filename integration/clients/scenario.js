#!/usr/bin/env node
// Bayeux client scenario runner: drives a real third-party Bayeux client
// (CometD's JavaScript client or Faye's client) against a server and checks
// what it claims. See README.md.
//
//   node scenario.js --client cometd|faye --url http://127.0.0.1:PORT/comet/bayeux
//        --transport long-polling|websocket|callback-polling
//        --scenario full|listen|publish|limits|refused [options]
//
// stdout: one JSON object per line, {"step":NAME,"ok":true,...} per step,
// then {"result":"pass"} (exit 0) or {"result":"fail","error":...} (exit 1).
// stderr: wire traces ({"trace":true,"dir":"out"|"in",...}) and client logs.

import { parseArgs } from "node:util";
import { Reporter, StepError, WireLog, Inbox, withTimeout, sleep, deepEqual, safeJSON, checkLoopbackURL, newNonce } from "./lib/common.js";

const USAGE = `usage: node scenario.js --client cometd|faye --url URL --transport long-polling|websocket|callback-polling
       --scenario full|listen|publish|limits|refused [--channel C] [--token JWT (sent as the handshake's ext.token)] [--expect-code N (refused; default 401)] [--count N] [--data JSON]
       [--timeout-ms N (30000)] [--step-timeout-ms N (10000)] [--settle-ms N (300)]
       [--keep-fallback] [--echo-listener] [--ack (cometd: the AckExtension)] [--max-network-delay-ms N] [--debug] [--quiet] [--allow-remote]`;

const CLIENTS = ["cometd", "faye"];
const TRANSPORTS = ["long-polling", "websocket", "callback-polling"];
const SCENARIOS = ["full", "listen", "publish", "limits", "refused"];

function parseOptions(argv) {
    const { values } = parseArgs({
        args: argv,
        options: {
            client: { type: "string" },
            url: { type: "string" },
            transport: { type: "string" },
            scenario: { type: "string" },
            channel: { type: "string" },
            count: { type: "string", default: "1" },
            data: { type: "string" },
            token: { type: "string" },
            "expect-code": { type: "string", default: "401" },
            "timeout-ms": { type: "string", default: "30000" },
            "step-timeout-ms": { type: "string", default: "10000" },
            "settle-ms": { type: "string", default: "300" },
            "max-network-delay-ms": { type: "string" },
            "keep-fallback": { type: "boolean", default: false },
            ack: { type: "boolean", default: false },
            "echo-listener": { type: "boolean", default: false },
            "allow-remote": { type: "boolean", default: false },
            debug: { type: "boolean", default: false },
            quiet: { type: "boolean", default: false },
            help: { type: "boolean", default: false },
        },
        strict: true,
    });
    if (values.help) {
        process.stderr.write(USAGE + "\n");
        process.exit(2);
    }
    const need = (name, allowed) => {
        const v = values[name];
        if (!v) throw new Error(`--${name} is required\n${USAGE}`);
        if (allowed && !allowed.includes(v)) throw new Error(`--${name} must be one of ${allowed.join(", ")}, got ${v}`);
        return v;
    };
    const int = (name, min) => {
        const n = Number(values[name]);
        if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, got ${values[name]}`);
        return n;
    };
    const opts = {
        client: need("client", CLIENTS),
        url: need("url"),
        transport: need("transport", TRANSPORTS),
        scenario: need("scenario", SCENARIOS),
        channel: values.channel,
        token: values.token,
        expectCode: values["expect-code"],
        count: int("count", 1),
        timeoutMs: int("timeout-ms", 1),
        stepTimeoutMs: int("step-timeout-ms", 1),
        settleMs: int("settle-ms", 0),
        maxNetworkDelay: values["max-network-delay-ms"] ? int("max-network-delay-ms", 1) : undefined,
        keepFallback: values["keep-fallback"],
        ack: values.ack,
        echoListener: values["echo-listener"],
        debug: values.debug,
        quiet: values.quiet,
    };
    checkLoopbackURL(opts.url, values["allow-remote"]);
    if (opts.ack && opts.client !== "cometd") {
        throw new Error("--ack is CometD's AckExtension: use it with --client cometd");
    }
    if (opts.keepFallback && opts.client === "faye" && opts.transport !== "websocket") {
        throw new Error("--keep-fallback with --client faye only makes sense with --transport websocket: Faye always prefers websocket when it is not disabled");
    }
    if ((opts.scenario === "listen" || opts.scenario === "publish" || opts.scenario === "limits") && !opts.channel) {
        throw new Error(`--channel is required for --scenario ${opts.scenario}`);
    }
    if (opts.scenario === "publish") {
        if (values.data === undefined) throw new Error("--data JSON is required for --scenario publish");
        try {
            opts.data = JSON.parse(values.data);
        } catch (e) {
            throw new Error("--data is not JSON: " + e.message);
        }
    }
    return opts;
}

// ---------------------------------------------------------------------------

class Run {
    constructor(opts, reporter, adapter, wire) {
        this.opts = opts;
        this.r = reporter;
        this.a = adapter;
        this.wire = wire;
        this.deadline = Date.now() + opts.timeoutMs;
        this.currentStep = "start";
    }

    // budget is the time a waiting step may take: the step timeout, capped
    // by what is left of the whole run.
    budget(cap) {
        return Math.max(1, Math.min(cap === undefined ? this.opts.stepTimeoutMs : cap, this.deadline - Date.now()));
    }

    async step(name, fn) {
        this.currentStep = name;
        return fn();
    }

    async handshake() {
        return this.step("handshake", async () => {
            const reply = await withTimeout(this.a.handshake(), this.budget(), "handshake", "the /meta/handshake reply");
            const req = firstSent(this.wire, "/meta/handshake");
            this.clientId = reply.clientId;
            this.r.step("handshake", {
                clientId: reply.clientId,
                transport: this.a.currentType(),
                request: req ? pick(req, ["version", "minimumVersion", "supportedConnectionTypes", "advice", "ext", "id"]) : null,
                reply: pick(reply, ["version", "supportedConnectionTypes", "advice", "ext", "id", "successful"]),
            });
            if (typeof reply.clientId !== "string" || reply.clientId === "") {
                throw new StepError("handshake", "handshake reply has no clientId string");
            }
        });
    }

    async connect() {
        return this.step("connect", async () => {
            const c = this.a.connected();
            if (this.a.name !== "cometd") {
                // Faye's first /meta/connect may be held for the server's
                // whole long-poll timeout (see faye-client.js: connected()).
                this.r.step("connect", { transport: this.a.currentType(), awaited: false });
                return;
            }
            const reply = await withTimeout(c, this.budget(), "connect", "the first successful /meta/connect reply (CometD sends it with advice.timeout 0: it must be answered at once)");
            this.r.step("connect", { transport: this.a.currentType(), reply: pick(reply, ["advice", "id", "successful"]) });
        });
    }

    async subscribe(channel, inbox, filter) {
        return this.step("subscribe", async () => {
            const handle = await withTimeout(
                this.a.subscribe(channel, (m) => {
                    if (!filter || filter(m)) inbox.push(m);
                }),
                this.budget(),
                "subscribe",
                `the /meta/subscribe reply for ${channel}`,
            );
            this.r.step("subscribe", { channel, transport: this.a.currentType() });
            return handle;
        });
    }

    async disconnect() {
        return this.step("disconnect", async () => {
            this.wire.note("disconnect-start");
            await withTimeout(this.a.disconnect(), this.budget(), "disconnect", "the /meta/disconnect reply");
            this.r.step("disconnect", {});
        });
    }

    // verifyTransport fails the run unless the wire log shows that the
    // requested transport really carried the traffic.
    verifyTransport() {
        this.currentStep = "transport";
        const expected = this.opts.transport;
        const rules = this.a.wireRules(expected);
        const summary = this.wire.summary();
        const problems = [];
        for (const t of rules.mustNotUse) {
            if (summary[t] && summary[t].requests > 0) problems.push(`${summary[t].requests} request(s) went over ${t}`);
        }
        if (!summary[expected] || summary[expected].requests === 0) problems.push(`nothing was sent over ${expected}`);
        const hs = this.wire.transportsOut((m) => m.channel === "/meta/handshake").filter((t) => t !== rules.handshakeVia);
        if (hs.length) problems.push(`the handshake went over ${hs.join(",")} (expected ${rules.handshakeVia})`);
        // A client may use HTTP until it switches to its socket (Faye does, and
        // on a loaded machine behind a proxy the upgrade can take a while, with
        // messages queued meanwhile still flushed over HTTP); from its first
        // message over the socket on, everything must go over it.
        const firstWS = this.wire.out.find((e) => e.transport === "websocket");
        const since = expected === "websocket" && firstWS ? firstWS.seq - 1 : 0;
        const after = this.wire.transportsOut((m) => m.channel !== "/meta/handshake" && m.channel !== "/meta/connect", since).filter((t) => t !== expected);
        if (after.length) problems.push(`messages after the handshake${since ? " and the switch to the socket" : ""} went over ${after.join(",")}`);
        const dataIn = this.wire.transportsIn((m) => m.data !== undefined && !/^\/meta\//.test(m.channel || ""), since).filter((t) => t !== expected);
        if (dataIn.length) problems.push(`data messages were delivered over ${dataIn.join(",")}`);
        if (expected === "websocket" && !this.wire.notes.some((n) => n.what === "websocket-open")) problems.push("no websocket was ever opened");
        const used = this.a.currentType();
        if (used !== expected) problems.push(`the client's transport is ${used}`);
        const connectVia = this.wire.transportsOut((m) => m.channel === "/meta/connect");
        const ws = this.wire.notes.filter((n) => n.what.startsWith("websocket-") || n.what.startsWith("jsonp-") || n.what.startsWith("http-"));
        const fields = { expected, used, connectVia, wire: summary, notes: ws.slice(0, 10) };
        if (problems.length) {
            this.r.stepFailed("transport", problems.join("; "), fields);
            throw reported(new StepError("transport", `transport ${expected} was not really used: ${problems.join("; ")}`));
        }
        this.r.step("transport", fields);
    }

    // verifyHealth fails the run if it only got through because the client
    // quietly recovered (re-opened its websocket, retried after an HTTP
    // error, a /meta/unsuccessful): that hides a server bug. expected, if
    // given, passes the notes a scenario caused on purpose.
    verifyHealth(expected) {
        this.currentStep = "health";
        const problems = [];
        const disconnectAt = this.wire.notes.findIndex((n) => n.what === "disconnect-start");
        const before = disconnectAt < 0 ? this.wire.notes : this.wire.notes.slice(0, disconnectAt);
        const bad = new Set(["handshake-failed", "meta-unsuccessful", "transport:down", "jsonp-error", "http-error", "http-status", "websocket-error", "websocket-close"]);
        for (const n of before) {
            if (bad.has(n.what) && !(expected && expected(n))) problems.push(`${n.what}: ${safeJSON(n)}`);
        }
        const opens = this.wire.notes.filter((n) => n.what === "websocket-open").length;
        if (opens > 1) problems.push(`the websocket was opened ${opens} times`);
        if (problems.length) {
            this.r.stepFailed("health", problems.join("; "));
            throw reported(new StepError("health", `the client had to recover from errors: ${problems.join("; ")}`));
        }
        this.r.step("health", {});
    }

    // verifyReplies fails the run if a message the client sent never got a
    // reply with its id (Bayeux requires one for every message).
    verifyReplies() {
        this.currentStep = "replies";
        const missing = this.wire.unanswered({ requireDataless: this.a.requireDatalessReplies });
        if (missing.length) {
            const why = this.a.requireDatalessReplies
                ? "these messages got no reply carrying their id without a data field (CometD's websocket transport only clears its per-message timer on such a reply and closes the socket after maxNetworkDelay otherwise)"
                : "these messages got no reply carrying their id and a successful field";
            this.r.stepFailed("replies", why, { missing });
            throw reported(new StepError("replies", `${why}: ${safeJSON(missing.map((m) => ({ id: m.id, channel: m.channel })))}`));
        }
        let count = 0;
        for (const e of this.wire.out) count += e.messages.length;
        this.r.step("replies", { messagesSent: count });
    }
}

function reported(e) {
    e.reported = true;
    return e;
}

function firstSent(wire, channel) {
    for (const e of wire.out) for (const m of e.messages) if (m && m.channel === channel) return m;
    return null;
}

function pick(obj, keys) {
    const out = {};
    for (const k of keys) if (obj && obj[k] !== undefined) out[k] = obj[k];
    return out;
}

// ---------------------------------------------------------------------------

async function scenarioFull(run) {
    const { r, a, opts, wire } = run;
    const nonce = newNonce();
    const ours = (m) => m && m.data && m.data.run === nonce;
    const exact = new Inbox("/chat/room");
    const wild = new Inbox("/chat/*");
    const deep = new Inbox("/deep/**");

    await run.handshake();
    await run.connect();
    const subExact = await run.subscribe("/chat/room", exact, ours);
    await run.subscribe("/chat/*", wild, ours);
    await run.subscribe("/deep/**", deep, ours);

    // A batch of 3 publishes to /chat/room.
    const batch = [1, 2, 3].map((n) => ({ run: nonce, n, text: `batch message ${n}` }));
    await run.step("publish-batch", async () => {
        const before = wire.out.length;
        const res = await withTimeout(a.publishBatch("/chat/room", batch), run.budget(), "publish-batch", "the replies to 3 batched publishes");
        const envelopes = wire.out.slice(before).filter((e) => e.messages.some((m) => m && m.channel === "/chat/room" && m.data && m.data.run === nonce));
        const oneRequest = envelopes.some((e) => batch.every((d) => e.messages.some((m) => m && m.channel === "/chat/room" && deepEqual(m.data, d))));
        const fields = { channel: "/chat/room", count: batch.length, requests: envelopes.length, oneRequest, how: res.note, transport: a.currentType() };
        if (res.expectOneRequest && !oneRequest) {
            throw new StepError("publish-batch", `the 3 publishes were sent in ${envelopes.length} requests, not one batch`, fields);
        }
        r.step("publish-batch", fields);
    });

    await run.step("deliver-batch", async () => {
        const got = await exact.waitCount(3, run.budget(), "deliver-batch");
        const gotWild = await wild.waitCount(3, run.budget(), "deliver-batch");
        for (const [name, msgs] of [["/chat/room", got], ["/chat/*", gotWild]]) {
            const datas = msgs.slice(0, 3).map((m) => m.data);
            if (!deepEqual(datas, batch)) {
                throw new StepError("deliver-batch", `subscription ${name} got ${safeJSON(datas)}, want ${safeJSON(batch)} in that order`);
            }
            const channels = [...new Set(msgs.map((m) => m.channel))];
            if (channels.length !== 1 || channels[0] !== "/chat/room") {
                throw new StepError("deliver-batch", `subscription ${name} got messages on channels ${safeJSON(channels)}, want only /chat/room`);
            }
        }
        r.step("deliver-batch", { exact: got.length, wildcard: gotWild.length, inOrder: true });
    });

    await run.step("deep-wildcard", async () => {
        const d = { run: nonce, deep: true, text: "to /deep/a/b" };
        await withTimeout(a.publish("/deep/a/b", d), run.budget(), "deep-wildcard", "the reply to the publish to /deep/a/b");
        const msgs = await deep.waitCount(1, run.budget(), "deep-wildcard");
        if (msgs[0].channel !== "/deep/a/b" || !deepEqual(msgs[0].data, d)) {
            throw new StepError("deep-wildcard", `/deep/** got ${safeJSON(msgs[0])}, want channel /deep/a/b data ${safeJSON(d)}`);
        }
        r.step("deep-wildcard", { subscription: "/deep/**", channel: msgs[0].channel });
    });

    await run.step("echo", async () => {
        const d = { text: "hi", run: nonce };
        const res = await withTimeout(a.echo(d, run.budget(), opts.echoListener), run.budget(), "echo", "the echo on /service/echo");
        if (!deepEqual(res.data, d)) {
            throw new StepError("echo", `echo returned ${safeJSON(res.data)}, want ${safeJSON(d)}`);
        }
        r.step("echo", { channel: "/service/echo", api: res.api, correlatedById: res.correlated, reply: pick(res.reply, ["id", "channel", "successful", "data"]) });
    });

    await run.step("unsubscribe", async () => {
        await withTimeout(a.unsubscribe(subExact), run.budget(), "unsubscribe", "the /meta/unsubscribe reply for /chat/room");
        r.step("unsubscribe", { channel: "/chat/room" });
    });

    await run.step("after-unsubscribe", async () => {
        const d = { run: nonce, n: 4, text: "after unsubscribe" };
        await withTimeout(a.publish("/chat/room", d), run.budget(), "after-unsubscribe", "the reply to the publish to /chat/room");
        const msgs = await wild.waitCount(4, run.budget(), "after-unsubscribe");
        if (!deepEqual(msgs[3].data, d)) {
            throw new StepError("after-unsubscribe", `/chat/* got ${safeJSON(msgs[3].data)} as 4th message, want ${safeJSON(d)}`);
        }
        await sleep(Math.min(opts.settleMs, run.budget()));
        if (exact.messages.length !== 3) {
            throw new StepError("after-unsubscribe", `/chat/room got ${exact.messages.length} messages, want 3 (nothing after its unsubscribe)`);
        }
        r.step("after-unsubscribe", { wildcard: msgs.length, exact: exact.messages.length });
    });

    run.currentStep = "no-duplicates";
    const counts = { "/chat/room": exact.messages.length, "/chat/*": wild.messages.length, "/deep/**": deep.messages.length };
    const want = { "/chat/room": 3, "/chat/*": 4, "/deep/**": 1 };
    if (!deepEqual(counts, want)) {
        throw new StepError("no-duplicates", `message counts ${safeJSON(counts)}, want ${safeJSON(want)} (a client subscribed to several matching channels must get each message once)`, { counts, want });
    }
    r.step("no-duplicates", { counts });

    await run.disconnect();
    run.verifyTransport();
    run.verifyHealth();
    run.verifyReplies();
}

async function scenarioListen(run) {
    const { r, opts } = run;
    const inbox = new Inbox(opts.channel);
    await run.handshake();
    await run.connect();
    await run.subscribe(opts.channel, {
        push: (m) => {
            r.step("message", { channel: m.channel, data: m.data });
            inbox.push(m);
        },
    });
    r.step("ready", { channel: opts.channel, clientId: run.clientId, transport: run.a.currentType() });
    await run.step("messages", async () => {
        // Leave a little of the run's time to report which step failed.
        await inbox.waitCount(opts.count, Math.max(1, run.deadline - Date.now() - 250), "messages");
        r.step("messages", { count: inbox.messages.length });
    });
    await run.disconnect();
    run.verifyTransport();
    run.verifyHealth();
    run.verifyReplies();
}

async function scenarioPublish(run) {
    const { r, a, opts } = run;
    await run.handshake();
    await run.connect();
    await run.step("publish", async () => {
        const ack = await withTimeout(a.publish(opts.channel, opts.data), run.budget(), "publish", `the reply to the publish to ${opts.channel}`);
        r.step("publish", { channel: opts.channel, successful: ack.successful === true, transport: a.currentType() });
    });
    await run.disconnect();
    run.verifyTransport();
    run.verifyHealth();
    run.verifyReplies();
}

// scenarioLimits subscribes to --count channels under --channel (the
// server's comet.max_subscriptions), then to one more, which the server
// must refuse with a 403 naming the limit; the client must go on as before:
// still connected, still subscribed, receiving what is published.
async function scenarioLimits(run) {
    const { r, a, opts } = run;
    const nonce = newNonce();
    const first = new Inbox(`${opts.channel}/0`);
    await run.handshake();
    await run.connect();
    await run.subscribe(`${opts.channel}/0`, first, (m) => m && m.data && m.data.run === nonce);
    for (let i = 1; i < opts.count; i++) await run.subscribe(`${opts.channel}/${i}`, new Inbox("unused"));
    const over = `${opts.channel}/${opts.count}`;
    await run.step("refused", async () => {
        let accepted = false;
        try {
            await withTimeout(a.subscribe(over, () => {}), run.budget(), "refused", `the /meta/subscribe reply for ${over}`);
            accepted = true;
        } catch (e) {
            if (!/too many subscriptions/.test(e.message)) throw e;
            r.step("refused", { channel: over, error: e.message });
        }
        if (accepted) throw new StepError("refused", `subscription ${opts.count + 1} to ${over} was accepted`);
    });
    await run.step("publish", async () => {
        const ack = await withTimeout(a.publish(`${opts.channel}/0`, { run: nonce }), run.budget(), "publish", "the reply to the publish");
        if (ack.successful !== true) throw new StepError("publish", "the publish after the refusal failed: " + safeJSON(ack));
        await first.waitCount(1, run.budget(), "publish");
        r.step("publish", { channel: `${opts.channel}/0`, transport: a.currentType() });
    });
    await run.disconnect();
    run.verifyTransport();
    run.verifyHealth((n) => n.what === "meta-unsuccessful" && n.channel === "/meta/subscribe" && /^403:/.test(n.error || ""));
    run.verifyReplies();
}

// scenarioRefused handshakes (with --token, typically a bad one) and
// expects the server to refuse: the handshake reply must be unsuccessful
// with a Bayeux error (code:args:message) of code --expect-code (default 401).
async function scenarioRefused(run) {
    const { r, a, opts } = run;
    await run.step("refused", async () => {
        try {
            await withTimeout(a.handshake(), run.budget(), "refused", "the /meta/handshake reply");
        } catch (e) {
            const code = /"?(\d{3}):[^:"]*:/.exec(e.message);
            if (!(e instanceof StepError) || !code || code[1] !== opts.expectCode) {
                throw new StepError("refused", `the handshake failed otherwise than with a ${opts.expectCode} error: ${e.message}`);
            }
            r.step("refused", { error: e.message });
            a.close();
            return;
        }
        throw new StepError("refused", "the handshake was accepted");
    });
}

// ---------------------------------------------------------------------------

async function main() {
    let opts;
    try {
        opts = parseOptions(process.argv.slice(2));
    } catch (e) {
        process.stdout.write(JSON.stringify({ result: "fail", error: "usage: " + e.message }) + "\n");
        process.exit(2);
    }
    const reporter = new Reporter({ quiet: opts.quiet });
    const wire = new WireLog(reporter);
    let run = null;
    let adapter = null;

    const finish = (ok, error, step) => {
        if (ok) reporter.pass();
        else reporter.fail(error, step);
        try {
            if (adapter && !ok) adapter.close();
        } catch (e) {
            /* ignore */
        }
        process.exit(ok ? 0 : 1);
    };

    const killer = setTimeout(() => {
        finish(false, `timeout: the scenario did not finish within ${opts.timeoutMs} ms (step ${run ? run.currentStep : "setup"})`, run ? run.currentStep : "setup");
    }, opts.timeoutMs);
    killer.unref();
    // Keep the process alive until the killer fires even if the client goes
    // idle: a hung scenario must fail, not exit 0 silently.
    const keepAlive = setInterval(() => {}, 1 << 30);

    process.on("unhandledRejection", (e) => finish(false, "unhandled rejection: " + (e && e.stack ? e.stack : e), run && run.currentStep));
    process.on("uncaughtException", (e) => finish(false, "uncaught exception: " + (e && e.stack ? e.stack : e), run && run.currentStep));

    try {
        const create = opts.client === "cometd" ? (await import("./lib/cometd-client.js")).createCometdClient : (await import("./lib/faye-client.js")).createFayeClient;
        adapter = await create(opts, reporter, wire);
        reporter.step("start", {
            client: adapter.name,
            clientVersion: adapter.version,
            node: process.version,
            transport: opts.transport,
            forced: !opts.keepFallback,
            offered: adapter.offered(),
            url: opts.url,
            scenario: opts.scenario,
        });
        run = new Run(opts, reporter, adapter, wire);
        if (opts.scenario === "full") await scenarioFull(run);
        else if (opts.scenario === "listen") await scenarioListen(run);
        else if (opts.scenario === "limits") await scenarioLimits(run);
        else if (opts.scenario === "refused") await scenarioRefused(run);
        else await scenarioPublish(run);
        clearInterval(keepAlive);
        finish(true);
    } catch (e) {
        const step = e instanceof StepError ? e.step : run ? run.currentStep : "setup";
        if (e instanceof StepError && !e.reported) {
            reporter.stepFailed(step, e.message, e.fields);
        }
        finish(false, e && e.message ? e.message : String(e), step);
    }
}

main();
