#!/usr/bin/env node
// Two CometD clients in one Node process (issue 17, point 9): they share the
// process's cookies, so the server sees one browser with two tabs and gives
// one of them the "multiple-clients" advice. Each round, client A subscribes
// to /stock/nasdaq/goog, /stock/nasdaq/* and /stock/**; client B publishes 20
// messages in one batch to /stock/nasdaq/goog, then one to
// /stock/nasdaq/goog/deeper; A must get every one of them.
//
// Who connects first decides which one is told to poll: --order ab (A
// first), ba (B first, so A, the subscriber, polls), par (a first visit:
// both handshake at once with an empty cookie jar, and each answer sets a
// new cookie: the race shows mostly in a new Node process, whose first
// requests are slow), or mix (ab and ba in turn).
//
//   node stock.js --url http://127.0.0.1:PORT/comet/cometd [--rounds N]
//        [--order ab|ba|mix|par] [--wait-ms 8000] [--timeout-ms N]
//
// stdout: one JSON line per round ({"round":N,"ok":true,"ms":...} or
// {"round":N,"ok":false,"got":...,"wire":[...]}: every HTTP exchange of
// the round), then {"result":"pass"} or {"result":"fail","error":...}.

import { parseArgs } from "node:util";
import { checkLoopbackURL } from "./lib/common.js";

const { values } = parseArgs({
    options: {
        url: { type: "string" },
        rounds: { type: "string", default: "1" },
        "wait-ms": { type: "string", default: "8000" },
        transport: { type: "string", default: "long-polling" },
        order: { type: "string", default: "mix" },
        "timeout-ms": { type: "string", default: "600000" },
    },
    strict: true,
});
checkLoopbackURL(values.url, false);
const rounds = Number(values.rounds);
const waitMs = Number(values["wait-ms"]);
if (!["ab", "ba", "mix", "par"].includes(values.order)) throw new Error("--order must be ab, ba, mix or par");
setTimeout(() => {
    process.stdout.write(JSON.stringify({ result: "fail", error: `not done within ${values["timeout-ms"]} ms` }) + "\n");
    process.exit(1);
}, Number(values["timeout-ms"])).unref();

const { adapt } = await import("cometd-nodejs-client");
const window = (globalThis.window = globalThis.window || {});

// install (re)installs cometd-nodejs-client's XMLHttpRequest, with an empty
// cookie jar (a first visit), wrapped to log every HTTP exchange into wire,
// kept for the report of a failed round.
let wire = [];
const t0 = Date.now();
function install() {
    adapt();
    const quiet = () => {};
    window.console = { log: quiet, debug: quiet, info: quiet, warn: quiet, error: quiet };
    const BaseXHR = window.XMLHttpRequest;
    window.XMLHttpRequest = class extends BaseXHR {
        send(body) {
            const e = { at: Date.now() - t0, out: String(body) };
            wire.push(e);
            const onload = this.onload;
            this.onload = (...a) => {
                e.in = this.responseText;
                e.status = this.status;
                e.done = Date.now() - t0;
                if (onload) return onload.apply(this, a);
            };
            return super.send(body);
        }
    };
}
install();
const { CometD } = await import("cometd");

function newClient(name) {
    const c = new CometD(name);
    for (const t of c.getTransportTypes()) if (t !== values.transport) c.unregisterTransport(t);
    c.configure({ url: values.url, logLevel: "warn" });
    return c;
}

const promise = (f) => new Promise((resolve, reject) => f(resolve, reject));
const ok = (what, resolve, reject) => (reply) => (reply.successful ? resolve(reply) : reject(new Error(what + ": " + JSON.stringify({ error: reply.error, failure: reply.failure && reply.failure.reason }))));

async function connected(c) {
    await promise((resolve, reject) => {
        const l = c.addListener("/meta/connect", (m) => {
            if (m.successful) {
                c.removeListener(l);
                resolve();
            }
        });
        c.handshake((r) => {
            if (!r.successful) reject(new Error("handshake: " + JSON.stringify(r.error)));
        });
    });
}

async function round(n) {
    wire = [];
    const order = values.order === "mix" ? ["ab", "ba"][n % 2] : values.order;
    if (order === "par") install(); // a first visit: both handshake before either has a cookie
    const a = newClient("A" + n);
    const b = newClient("B" + n);
    const subs = ["/stock/nasdaq/goog", "/stock/nasdaq/*", "/stock/**"];
    const got = Object.fromEntries(subs.map((s) => [s, []]));
    try {
        const subscribe = async () => {
            for (const s of subs) {
                await promise((resolve, reject) => a.subscribe(s, (m) => got[s].push(m.data.n), ok("subscribe " + s, resolve, reject)));
            }
        };
        if (order === "ab") {
            await connected(a);
            await subscribe();
            await connected(b);
        } else if (order === "ba") {
            await connected(b);
            await connected(a);
            await subscribe();
        } else {
            await Promise.all([connected(a), connected(b)]); // with a new jar: see round
            await subscribe();
        }
        const acks = [];
        b.batch(() => {
            for (let i = 0; i < 20; i++) acks.push(promise((resolve, reject) => b.publish("/stock/nasdaq/goog", { round: n, n: i }, ok("publish", resolve, reject))));
        });
        await Promise.all(acks);
        await promise((resolve, reject) => b.publish("/stock/nasdaq/goog/deeper", { round: n, n: 20 }, ok("publish deeper", resolve, reject)));
        const want = { "/stock/nasdaq/goog": 20, "/stock/nasdaq/*": 20, "/stock/**": 21 };
        const start = Date.now();
        const done = () => subs.every((s) => got[s].length >= want[s]);
        while (!done() && Date.now() - start < waitMs) await new Promise((r) => setTimeout(r, 20));
        const counts = Object.fromEntries(subs.map((s) => [s, got[s].length]));
        const good = subs.every((s) => got[s].length === want[s]);
        const line = { round: n, order, ok: good, ms: Date.now() - start, counts };
        if (!good) {
            line.got = got;
            line.wire = wire;
        }
        return line;
    } finally {
        await Promise.all([a, b].map((c) => promise((resolve) => (c.isDisconnected() ? resolve() : c.disconnect(() => resolve())))));
    }
}

let failed = 0;
for (let n = 1; n <= rounds; n++) {
    let line;
    try {
        line = await round(n);
    } catch (e) {
        line = { round: n, ok: false, error: String(e && e.message), wire };
    }
    if (!line.ok) failed++;
    process.stdout.write(JSON.stringify(line) + "\n");
    if (failed >= 3) break; // each lost round waits its 8 s: enough to see why
}
const result = failed ? { result: "fail", error: `${failed} rounds lost messages (stopped after 3)`, failed, rounds } : { result: "pass", rounds };
process.stdout.write(JSON.stringify(result) + "\n");
process.exit(failed ? 1 : 0);
