#!/usr/bin/env node
// Reference Bayeux server for the harness's own self-check (a TEST FIXTURE,
// not the product): Faye's Node server on 127.0.0.1, mounted at
// /comet/bayeux, with an emulation of Stardust's built-in echo service.
//
//   node faye-server.js [--port 0] [--mount /comet/bayeux] [--timeout-s 25]
//                       [--echo-style separate|combined] [--max-lifetime-s 600]
//                       [--exit-on-stdin-close] [--no-websocket] [--debug]
//                       [--bench]
//
// --bench makes it the peer of `make compare`: a stock faye.NodeAdapter with
// no extension (no echo service) and no event logging, so that what is
// measured is Faye itself.
//
// Prints one JSON line {"listening":true,"port":N,"url":...} once it accepts
// connections, then logs to stderr. It exits on SIGTERM/SIGINT, after
// --max-lifetime-s, and with --exit-on-stdin-close when its stdin closes (so
// it dies with the test that started it).
//
// Echo service: a publish to /service/echo is answered to the publishing
// client only, on /service/echo, with the same data:
//   separate (default): Faye's own publish reply {id, channel, successful}
//       plus a second message {id, channel, successful: true, data} queued
//       to that client (like a CometD server's remote-call reply: the
//       data-less reply clears CometD's per-message websocket timer, the
//       second one is matched by remoteCall() through its id).
//   combined: only the publish reply, with "data" added to it.

import http from "node:http";
import { createRequire } from "node:module";
import { parseArgs } from "node:util";

const require = createRequire(import.meta.url);
const faye = require("faye");

const { values } = parseArgs({
    options: {
        port: { type: "string", default: "0" },
        mount: { type: "string", default: "/comet/bayeux" },
        "timeout-s": { type: "string", default: "25" },
        "echo-style": { type: "string", default: "separate" },
        "max-lifetime-s": { type: "string", default: "600" },
        "exit-on-stdin-close": { type: "boolean", default: false },
        "no-websocket": { type: "boolean", default: false },
        debug: { type: "boolean", default: false },
        bench: { type: "boolean", default: false },
    },
});
const port = Number(values.port);
const timeout = Number(values["timeout-s"]);
const echoStyle = values["echo-style"];
if (!["separate", "combined"].includes(echoStyle)) {
    console.error("--echo-style must be separate or combined");
    process.exit(2);
}

const log = (...a) => process.stderr.write("[faye-server] " + a.map((x) => (typeof x === "string" ? x : JSON.stringify(x))).join(" ") + "\n");
if (values.debug) {
    faye.logger = { debug: log, info: log, warn: log, error: log };
} else {
    faye.logger = { warn: log, error: log };
}

const bayeux = new faye.NodeAdapter({ mount: values.mount, timeout });
const engine = bayeux._server._engine; // Engine.Proxy
const memory = engine._engine; // the memory engine with the per-client queues

// queueFor delivers msg to one client, through its queue, exactly as Faye
// delivers published messages (the held /meta/connect or the websocket).
function queueFor(clientId, msg) {
    if (!memory._messages.has(clientId)) memory._messages.set(clientId, []);
    memory._messages.get(clientId).push(msg);
    memory.emptyQueue(clientId);
}

const pendingCombined = new Map();
if (!values.bench) bayeux.addExtension({
    incoming(message, callback) {
        if (message.channel === "/service/echo" && message.data !== undefined && message.clientId) {
            if (echoStyle === "combined") {
                pendingCombined.set(message.clientId + " " + message.id, message.data);
            } else {
                const reply = { id: message.id, channel: "/service/echo", successful: true, data: message.data };
                const clientId = message.clientId;
                // After Faye's own publish reply has gone out.
                setImmediate(() => queueFor(clientId, reply));
            }
        }
        callback(message);
    },
    outgoing(message, callback) {
        if (echoStyle === "combined" && message.channel === "/service/echo" && message.successful === true && message.data === undefined) {
            const key = message.clientId + " " + message.id;
            if (pendingCombined.has(key)) {
                message.data = pendingCombined.get(key);
                pendingCombined.delete(key);
            }
        }
        callback(message);
    },
});

if (!values.bench) {
    bayeux.on("handshake", (clientId) => log("handshake", clientId));
    bayeux.on("disconnect", (clientId) => log("disconnect", clientId));
}

const server = http.createServer((req, res) => {
    res.writeHead(404, { "Content-Type": "text/plain" });
    res.end("not found\n");
});
bayeux.attach(server);
if (values["no-websocket"]) {
    // For the harness's negative self-check: a server whose websocket
    // upgrade fails, so that a client that silently falls back to
    // long-polling is caught.
    server.removeAllListeners("upgrade");
    server.on("upgrade", (req, socket) => socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"));
}

server.listen(port, "127.0.0.1", () => {
    const p = server.address().port;
    process.stdout.write(JSON.stringify({ listening: true, port: p, url: `http://127.0.0.1:${p}${values.mount}`, echoStyle, timeout }) + "\n");
});

function shutdown(why) {
    log("exiting:", why);
    process.exit(0);
}
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
if (values["exit-on-stdin-close"]) {
    process.stdin.on("end", () => shutdown("stdin closed"));
    process.stdin.on("error", () => shutdown("stdin error"));
    process.stdin.resume();
}
setTimeout(() => shutdown("max lifetime"), Number(values["max-lifetime-s"]) * 1000).unref();
