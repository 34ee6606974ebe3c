// Adapter around CometD's JavaScript client (npm "cometd", run in Node with
// "cometd-nodejs-client", which supplies XMLHttpRequest and WebSocket).
//
// Transport forcing: by default every transport but the requested one is
// unregistered, so the handshake offers only that one and CometD cannot fall
// back. With keepFallback all three stay registered (the browser default:
// handshake offers ["websocket","long-polling","callback-polling"]) and the
// requested one is moved first. Either way the wire log proves which
// transport really carried the traffic.
//
// callback-polling only exists for browsers (it needs <script> elements);
// lib/script-tag.js supplies a faithful stand-in.
//
// Service calls use cometd.remoteCall("echo", data, timeout, cb), the CometD
// 3+ API (still in 9.0), which publishes to /service/echo and matches the
// reply by message id. A listener on /service/echo catches an echo that comes
// back without the request's id (which remoteCall cannot match).

import { createRequire } from "node:module";
import { StepError, deepEqual, safeJSON } from "./common.js";
import { installScriptTags } from "./script-tag.js";

const require = createRequire(import.meta.url);

// describe renders a CometD reply or failure for humans; failure objects
// hold the transport and XHR, which do not serialise.
function describe(reply) {
    if (!reply) return String(reply);
    const f = reply.failure || {};
    const out = { error: reply.error, successful: reply.successful };
    for (const k of ["reason", "httpCode", "websocketCode", "connectionType"]) if (f[k] !== undefined) out[k] = f[k];
    if (f.exception) out.exception = String(f.exception);
    return safeJSON(out);
}

function parseBody(body) {
    if (typeof body !== "string") body = String(body);
    try {
        const v = JSON.parse(body);
        return Array.isArray(v) ? v : [v];
    } catch (e) {
        return [{ unparsable: body.slice(0, 2000) }];
    }
}

export async function createCometdClient(opts, reporter, wire) {
    const { adapt } = await import("cometd-nodejs-client");
    adapt();
    const window = globalThis.window;
    // cometd-nodejs-client points window.console at console (stdout). Keep
    // stdout for our JSON lines: send the client's own logging to stderr.
    const toErr = (...args) => reporter.log("[cometd]", ...args.map((a) => (typeof a === "string" ? a : safeJSON(a))));
    window.console = { log: toErr, debug: toErr, info: toErr, warn: toErr, error: toErr };

    // Wire instrumentation: long-polling (XMLHttpRequest).
    const BaseXHR = window.XMLHttpRequest;
    window.XMLHttpRequest = class extends BaseXHR {
        open(method, url, ...rest) {
            this.__req = { method, url: String(url) };
            return super.open(method, url, ...rest);
        }
        send(body) {
            const req = this.__req || {};
            wire.sent("long-polling", parseBody(body), { method: req.method, url: req.url });
            const onload = this.onload;
            this.onload = (...a) => {
                wire.received("long-polling", parseBody(this.responseText), { status: this.status, url: req.url });
                if (onload) return onload.apply(this, a);
            };
            const onerror = this.onerror;
            this.onerror = (...a) => {
                wire.note("http-error", { transport: "long-polling", url: req.url, status: this.status, statusText: this.statusText });
                if (onerror) return onerror.apply(this, a);
            };
            return super.send(body);
        }
    };

    // Wire instrumentation: websocket (the "ws" package).
    const BaseWS = window.WebSocket;
    window.WebSocket = class extends BaseWS {
        constructor(url, protocols, options) {
            super(url, protocols, options);
            wire.note("websocket-connect", { url: String(url), protocols: protocols === undefined ? [] : [].concat(protocols) });
            this.on("upgrade", (res) => wire.note("websocket-upgrade", { status: res.statusCode, protocolHeader: res.headers["sec-websocket-protocol"] || null, extensions: res.headers["sec-websocket-extensions"] || null }));
            this.on("open", () => wire.note("websocket-open", { protocol: this.protocol, extensions: this.extensions }));
            this.on("message", (data) => wire.received("websocket", parseBody(data.toString())));
            this.on("close", (code, reason) => wire.note("websocket-close", { code, reason: String(reason) }));
            this.on("error", (e) => wire.note("websocket-error", { error: e.message }));
        }
        send(data, ...rest) {
            wire.sent("websocket", parseBody(data));
            return super.send(data, ...rest);
        }
    };

    // callback-polling needs a DOM; give it one only when asked, so the other
    // transports run in the plain Node environment cometd-nodejs-client sets up.
    if (opts.transport === "callback-polling" || opts.keepFallback) {
        installScriptTags(window, window, {
            onRequest: (url, messages, meta) => wire.sent("callback-polling", [].concat(messages), { url, ...meta }),
            onResponse: (url, info) => {
                if (info.messages) wire.received("callback-polling", [].concat(info.messages), { status: info.status, contentType: info.contentType });
                else wire.note("jsonp-error", { url, ...info });
            },
        });
    }

    const { CometD } = await import("cometd");
    const cometd = new CometD();
    const version = require("cometd/package.json").version;

    const registered = cometd.getTransportTypes();
    if (!registered.includes(opts.transport)) {
        throw new StepError("setup", `CometD ${version} has no transport ${opts.transport} (has ${registered})`);
    }
    if (opts.keepFallback) {
        const t = cometd.unregisterTransport(opts.transport);
        cometd.registerTransport(opts.transport, t, 0);
    } else {
        for (const t of registered) if (t !== opts.transport) cometd.unregisterTransport(t);
    }

    if (opts.ack) {
        // CometD's own AckExtension: numbered batches in connect replies,
        // acknowledged by the next connect. The step says what the server
        // answered, so the test can check it really was in use.
        const { AckExtension } = await import("cometd/AckExtension.js");
        cometd.registerExtension("ack", new AckExtension());
        let batches = 0;
        cometd.addListener("/meta/handshake", (m) => {
            if (m.successful) reporter.step("ack", { server: !!(m.ext && m.ext.ack === true) });
        });
        cometd.addListener("/meta/connect", (m) => {
            if (m.successful && m.ext && typeof m.ext.ack === "number") {
                batches++;
                if (batches === 1) reporter.step("ack-batch", { batch: m.ext.ack });
            }
        });
    }

    if (opts.token) {
        // As an app's page does: the token goes in the handshake's ext.
        cometd.registerExtension("token", {
            outgoing(m) {
                if (m.channel === "/meta/handshake") m.ext = { ...(m.ext || {}), token: opts.token };
                return m;
            },
        });
    }

    const config = { url: opts.url, logLevel: opts.debug ? "debug" : "warn" };
    if (opts.maxNetworkDelay) config.maxNetworkDelay = opts.maxNetworkDelay;
    cometd.configure(config);

    let firstConnect = null;
    const connected = new Promise((resolve, reject) => {
        firstConnect = { resolve, reject };
    });
    cometd.addListener("/meta/connect", (m) => {
        if (m.successful) firstConnect.resolve(m);
    });
    cometd.addListener("/meta/unsuccessful", (m) => {
        const f = m.failure || {};
        wire.note("meta-unsuccessful", {
            id: m.id,
            channel: m.channel,
            error: m.error,
            failure: { reason: f.reason, httpCode: f.httpCode, websocketCode: f.websocketCode, exception: f.exception ? String(f.exception) : undefined },
        });
    });

    let lastType = null;
    const currentType = () => {
        const t = cometd.getTransport();
        if (t) lastType = t.type;
        return lastType;
    };

    return {
        name: "cometd",
        version,
        offered: () => cometd.getTransportTypes(),
        currentType,

        handshake() {
            return new Promise((resolve, reject) => {
                cometd.handshake((reply) => {
                    currentType();
                    if (reply.successful) return resolve(reply);
                    // With keepFallback CometD negotiates another transport
                    // and handshakes again: let it, and let the transport
                    // check catch the fallback.
                    if (opts.keepFallback) return wire.note("handshake-failed", { transport: lastType, reply: describe(reply) });
                    reject(new StepError("handshake", "handshake unsuccessful: " + describe(reply)));
                });
            });
        },

        // connected resolves on the first successful /meta/connect reply.
        // CometD's first /meta/connect carries advice {timeout: 0}, so the
        // server must answer it at once.
        connected: () => connected,

        subscribe(channel, onMessage) {
            return new Promise((resolve, reject) => {
                const sub = cometd.subscribe(channel, (m) => onMessage({ channel: m.channel, data: m.data, id: m.id }), (reply) => {
                    if (reply.successful) resolve({ channel, sub, reply });
                    else reject(new StepError("subscribe", `subscribe ${channel} unsuccessful: ` + describe(reply)));
                });
            });
        },

        unsubscribe(handle) {
            return new Promise((resolve, reject) => {
                cometd.unsubscribe(handle.sub, (reply) => {
                    if (reply.successful) resolve(reply);
                    else reject(new StepError("unsubscribe", `unsubscribe ${handle.channel} unsuccessful: ` + describe(reply)));
                });
            });
        },

        publish(channel, data) {
            return new Promise((resolve, reject) => {
                cometd.publish(channel, data, (reply) => {
                    if (reply.successful) resolve(reply);
                    else reject(new StepError("publish", `publish to ${channel} unsuccessful: ` + describe(reply)));
                });
            });
        },

        // publishBatch sends all publishes inside cometd.batch(), which must
        // put them in one request (one POST, one websocket frame, or one
        // JSONP GET).
        async publishBatch(channel, datas) {
            const promises = [];
            cometd.batch(() => {
                for (const d of datas) {
                    promises.push(new Promise((resolve, reject) => {
                        cometd.publish(channel, d, (reply) => {
                            if (reply.successful) resolve(reply);
                            else reject(new StepError("publish-batch", `batched publish to ${channel} unsuccessful: ` + describe(reply)));
                        });
                    }));
                }
            });
            const acks = await Promise.all(promises);
            return { acks, expectOneRequest: true, note: "cometd.batch()" };
        },

        echo(data, timeoutMs, allowListener) {
            return new Promise((resolve, reject) => {
                const viaListener = [];
                const listener = cometd.addListener("/service/echo", (m) => viaListener.push(m));
                cometd.remoteCall("echo", data, timeoutMs, (reply) => {
                    cometd.removeListener(listener);
                    if (reply.successful !== false && reply.data !== undefined) {
                        return resolve({ data: reply.data, reply, correlated: true, api: "remoteCall" });
                    }
                    const uncorrelated = viaListener.find((m) => deepEqual(m.data, data));
                    if (uncorrelated && allowListener) {
                        return resolve({ data: uncorrelated.data, reply: uncorrelated, correlated: false, api: "addListener" });
                    }
                    let why = "remoteCall('echo') failed: " + describe(reply);
                    if (uncorrelated) {
                        why += `; the echo did arrive on /service/echo but with id ${safeJSON(uncorrelated.id)}, so remoteCall could not match it: the service reply must carry the request's id`;
                    }
                    reject(new StepError("echo", why));
                });
            });
        },

        disconnect() {
            currentType();
            return new Promise((resolve, reject) => {
                cometd.disconnect((reply) => {
                    if (reply.successful) resolve(reply);
                    else reject(new StepError("disconnect", "disconnect unsuccessful: " + describe(reply)));
                });
            });
        },

        // wireRules says what the wire log must show for the transport to
        // count as really used.
        wireRules(expected) {
            return { mustUse: expected, mustNotUse: ["long-polling", "websocket", "callback-polling"].filter((t) => t !== expected), handshakeVia: expected };
        },

        // Over websocket CometD clears a message's reply timer only on a
        // meta reply or a reply without "data"; a publish whose only reply
        // has data makes CometD close the socket after maxNetworkDelay.
        requireDatalessReplies: opts.transport === "websocket",

        close() {
            try {
                if (!cometd.isDisconnected()) cometd.disconnect();
            } catch (e) {
                /* best effort */
            }
        },
    };
}
