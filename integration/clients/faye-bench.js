#!/usr/bin/env node
// Faye's Node server as the peer of `make compare` (a BENCHMARK FIXTURE, not
// the product): stock faye.NodeAdapter, no extension, no logging, mounted at
// /comet/bayeux on 127.0.0.1 only, long-polling and WebSocket.
//
//   node faye-bench.js [--port 8000] [--mount /comet/bayeux] [--timeout-s 30]
//                      [--max-lifetime-s 900]
//
// Prints one JSON line {"listening":true,"port":N,"url":...} once it accepts
// connections. It exits on SIGTERM/SIGINT and after --max-lifetime-s.

import http from "node:http";
import { createRequire } from "node:module";
import { parseArgs } from "node:util";

const require = createRequire(import.meta.url);
const faye = require("faye");

const { values } = parseArgs({
    options: {
        port: { type: "string", default: "0" },
        mount: { type: "string", default: "/comet/bayeux" },
        "timeout-s": { type: "string", default: "30" },
        "max-lifetime-s": { type: "string", default: "900" },
    },
});

const bayeux = new faye.NodeAdapter({ mount: values.mount, timeout: Number(values["timeout-s"]) });
const server = http.createServer((req, res) => {
    res.writeHead(404, { "Content-Type": "text/plain" });
    res.end("not found\n");
});
bayeux.attach(server);
server.listen(Number(values.port), "127.0.0.1", () => {
    const p = server.address().port;
    process.stdout.write(JSON.stringify({ listening: true, port: p, url: `http://127.0.0.1:${p}${values.mount}` }) + "\n");
});
process.on("SIGTERM", () => process.exit(0));
process.on("SIGINT", () => process.exit(0));
setTimeout(() => process.exit(0), Number(values["max-lifetime-s"]) * 1000).unref();
