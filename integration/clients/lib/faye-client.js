// Adapter around Faye's client (npm "faye", its Node build).
//
// Faye in Node registers the transports "in-process", "websocket" and
// "long-polling" and offers all of them in the handshake, even disabled ones.
// Its handshake always goes over an HTTP transport (it only picks among
// "long-polling", "callback-polling", "in-process" for it), then it switches
// to the best transport the server's handshake reply lists, probing websocket
// by opening a socket. So:
//   long-polling      client.disable("websocket")
//   websocket         nothing can be disabled (the handshake needs HTTP); the
//                     wire log must show every publish, subscribe and
//                     delivery after the handshake went over the socket, or
//                     the run fails (that is how a silent fallback is caught)
//   callback-polling  Faye's browser JSONP transport is registered under
//                     "callback-polling" (with lib/script-tag.js as the DOM)
//                     and "websocket" and "long-polling" are disabled.
//
// Service calls: Faye has no remoteCall. The scenario publishes to
// /service/echo and an incoming extension watches for the echo on
// /service/echo (Faye cannot subscribe to /service/** on a server that
// forbids it, and need not: extensions see every incoming message).

import { createRequire } from "node:module";
import { StepError, deepEqual, safeJSON } from "./common.js";
import { installScriptTags } from "./script-tag.js";

const require = createRequire(import.meta.url);

function wrap(proto, name, fn) {
    const orig = proto[name];
    proto[name] = function (...args) {
        return fn.call(this, orig, ...args);
    };
}

export async function createFayeClient(opts, reporter, wire) {
    const faye = require("faye");
    const Transport = require("faye/src/transport/transport");
    const NodeHttp = require("faye/src/transport/node_http");
    const FayeWS = require("faye/src/transport/web_socket");
    const version = require("faye/package.json").version;

    if (opts.debug) {
        faye.logger = {
            debug: (m) => reporter.log("[faye]", m),
            info: (m) => reporter.log("[faye]", m),
            warn: (m) => reporter.log("[faye]", m),
            error: (m) => reporter.log("[faye]", m),
        };
    }

    if (opts.transport === "callback-polling" || opts.keepFallback) {
        const JSONP = require("faye/src/transport/jsonp");
        if (!Transport.getConnectionTypes().includes("callback-polling")) {
            Transport.register("callback-polling", JSONP);
        }
        wrap(JSONP.prototype, "request", function (orig, messages) {
            wire.sent("callback-polling", messages, { url: this.endpoint.href });
            return orig.call(this, messages);
        });
        installScriptTags(globalThis, globalThis, {
            onResponse: (url, info) => {
                if (info.error) wire.note("jsonp-error", { url, ...info });
                else wire.note("jsonp-response", { status: info.status, contentType: info.contentType, nosniff: info.nosniff });
            },
        });
    }

    wrap(NodeHttp.prototype, "request", function (orig, messages) {
        wire.sent("long-polling", messages, { url: this.endpoint.href });
        const req = orig.call(this, messages);
        if (req && typeof req.on === "function") {
            req.on("error", (e) => wire.note("http-error", { transport: "long-polling", error: e.message }));
        }
        return req;
    });
    wrap(NodeHttp.prototype, "_handleResponse", function (orig, messages, response) {
        if (response.statusCode !== 200) {
            wire.note("http-status", { transport: "long-polling", status: response.statusCode, contentType: response.headers["content-type"] || null });
        }
        return orig.call(this, messages, response);
    });
    wrap(FayeWS.prototype, "request", function (orig, messages) {
        wire.sent("websocket", messages, { url: FayeWS.getSocketUrl(this.endpoint) });
        return orig.call(this, messages);
    });
    wrap(FayeWS.prototype, "_createSocket", function (orig) {
        const socket = orig.call(this);
        wire.note("websocket-connect", { url: FayeWS.getSocketUrl(this.endpoint), protocols: [] });
        if (socket && socket.on) {
            socket.on("open", () => wire.note("websocket-open", { protocol: socket.protocol || "", extensions: socket.extensions || "" }));
            socket.on("close", (e) => wire.note("websocket-close", { code: e.code, reason: e.reason }));
            socket.on("error", (e) => wire.note("websocket-error", { error: e.message }));
        }
        return socket;
    });
    wrap(Transport.prototype, "_receive", function (orig, replies) {
        if (replies) wire.received(this.connectionType, [].concat(replies));
        return orig.call(this, replies);
    });

    const client = new faye.Client(opts.url);
    if (!opts.keepFallback) {
        if (opts.transport === "long-polling") client.disable("websocket");
        if (opts.transport === "callback-polling") {
            client.disable("websocket");
            client.disable("long-polling");
        }
    }
    client.on("transport:down", () => wire.note("transport:down", { type: client._dispatcher.connectionType || null }));
    client.on("transport:up", () => wire.note("transport:up", { type: client._dispatcher.connectionType || null }));

    if (opts.token) {
        // As an app's page does: the token goes in the handshake's ext.
        client.addExtension({
            outgoing(message, callback) {
                if (message.channel === "/meta/handshake") message.ext = { ...(message.ext || {}), token: opts.token };
                callback(message);
            },
        });
    }

    // Incoming extension: meta replies for the steps Faye gives no callback
    // for (handshake failure, unsubscribe), and the echo.
    const metaWaiters = [];
    const incomingSeen = [];
    client.addExtension({
        incoming(message, callback) {
            incomingSeen.push(message);
            for (const w of metaWaiters.slice()) {
                if (w.pred(message)) {
                    metaWaiters.splice(metaWaiters.indexOf(w), 1);
                    w.resolve(message);
                }
            }
            callback(message);
        },
    });
    const waitIncoming = (pred) => {
        const hit = incomingSeen.find(pred);
        if (hit) return Promise.resolve(hit);
        return new Promise((resolve) => metaWaiters.push({ pred, resolve }));
    };

    const currentType = () => client._dispatcher.connectionType || null;

    return {
        name: "faye",
        version,
        offered: () => Transport.getConnectionTypes(),
        currentType,

        handshake() {
            return new Promise((resolve, reject) => {
                // Faye retries a handshake that got no answer forever; the
                // first failure is enough to fail the step.
                client.on("transport:down", () => setImmediate(() => {
                    if (!incomingSeen.some((m) => m.channel === "/meta/handshake")) {
                        const last = wire.notes.filter((n) => n.what.startsWith("http-") || n.what.startsWith("jsonp-")).pop();
                        reject(new StepError("handshake", "the handshake request failed" + (last ? ": " + safeJSON(last) : " (no HTTP response)")));
                    }
                }));
                waitIncoming((m) => m.channel === "/meta/handshake").then((reply) => {
                    if (reply.successful) resolve(reply);
                    else reject(new StepError("handshake", "handshake unsuccessful: " + safeJSON(reply.error || reply)));
                });
                client.handshake(() => {});
            });
        },

        // connected starts Faye's /meta/connect loop and resolves once the
        // first /meta/connect has been answered successfully. Faye does not
        // ask for an immediate answer to its first /meta/connect (no
        // advice.timeout 0 unless it is batched with other messages), so
        // this may take the server's whole long-poll timeout; the scenarios
        // do not wait for it.
        connected() {
            client.connect(() => {});
            return waitIncoming((m) => m.channel === "/meta/connect" && m.successful === true);
        },

        subscribe(channel, onMessage) {
            return new Promise((resolve, reject) => {
                const sub = client.subscribe(channel).withChannel((ch, data) => onMessage({ channel: ch, data }));
                sub.then(
                    () => resolve({ channel, sub }),
                    (err) => reject(new StepError("subscribe", `subscribe ${channel} unsuccessful: ${err && err.message ? err.message : safeJSON(err)}`)),
                );
            });
        },

        unsubscribe(handle) {
            const seenBefore = incomingSeen.length;
            const ack = waitIncoming(
                (m) => m.channel === "/meta/unsubscribe" && [].concat(m.subscription).includes(handle.channel) && incomingSeen.indexOf(m) >= seenBefore,
            );
            handle.sub.cancel();
            return ack.then((reply) => {
                if (!reply.successful) throw new StepError("unsubscribe", `unsubscribe ${handle.channel} unsuccessful: ` + safeJSON(reply.error || reply));
                return reply;
            });
        },

        publish(channel, data) {
            return new Promise((resolve, reject) => {
                client.publish(channel, data).then(
                    () => resolve({ successful: true }),
                    (err) => reject(new StepError("publish", `publish to ${channel} unsuccessful: ${err && err.message ? err.message : safeJSON(err)}`)),
                );
            });
        },

        // publishBatch publishes in one tick; Faye's HTTP transports queue
        // the messages and flush them as one request. Faye's websocket
        // transport never batches (batching: false): one frame per message.
        async publishBatch(channel, datas) {
            const promises = datas.map((d) => this.publish(channel, d));
            const acks = await Promise.all(promises);
            const ws = currentType() === "websocket";
            return { acks, expectOneRequest: !ws, note: ws ? "Faye's websocket transport sends one frame per message (batching: false)" : "3 publishes in one tick" };
        },

        echo(data, timeoutMs) {
            const seenBefore = incomingSeen.length;
            const got = waitIncoming((m) => m.channel === "/service/echo" && m.data !== undefined && incomingSeen.indexOf(m) >= seenBefore && deepEqual(m.data, data));
            const pub = this.publish("/service/echo", data).catch((e) => {
                throw new StepError("echo", e.message);
            });
            return Promise.all([got, pub]).then(([reply]) => {
                const sentId = findSentId(wire, "/service/echo", data);
                return { data: reply.data, reply, correlated: sentId !== undefined && String(reply.id) === String(sentId), api: "publish + incoming extension" };
            });
        },

        disconnect() {
            return new Promise((resolve, reject) => {
                const p = client.disconnect();
                if (!p) return reject(new StepError("disconnect", "client was not connected"));
                p.then(
                    () => resolve({ successful: true }),
                    (err) => reject(new StepError("disconnect", "disconnect unsuccessful: " + (err && err.message ? err.message : safeJSON(err)))),
                );
            });
        },

        wireRules(expected) {
            // Faye always handshakes over HTTP; for websocket only the
            // traffic after the handshake must be on the socket.
            const handshakeVia = expected === "websocket" ? "long-polling" : expected;
            return { mustUse: expected, mustNotUse: ["long-polling", "websocket", "callback-polling"].filter((t) => t !== expected && t !== handshakeVia), handshakeVia };
        },

        requireDatalessReplies: false,

        close() {
            try {
                client.disconnect();
            } catch (e) {
                /* best effort */
            }
        },
    };
}

function findSentId(wire, channel, data) {
    for (const e of wire.out) for (const m of e.messages) if (m.channel === channel && deepEqual(m.data, data)) return m.id;
    return undefined;
}
