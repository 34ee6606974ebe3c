// A stand-in for the browser's <script> element, so that the JSONP
// ("callback-polling") transports of CometD and Faye, which only exist for
// browsers, run unmodified in Node.
//
// The clients do exactly what they do in a browser: create a script element,
// set its src to BAYEUX_URL?jsonp=NAME&message=JSON, append it to <head>, and
// wait for the server's script to call window[NAME](replies). Here appending
// the element performs an HTTP GET and "executes" the response the way a
// browser would, with the checks a browser makes:
//   - a non-2xx status fires onerror (browsers do not run the script);
//   - with "X-Content-Type-Options: nosniff" a non-JavaScript Content-Type is
//     blocked and fires onerror (Chrome and Firefox do this);
//   - the body must be a single call NAME(JSON) (optionally preceded by a
//     comment such as Faye's "/**/"), where NAME is the callback the client
//     asked for; anything else would be a script error in a browser, which
//     never reaches the client, so it is reported and fires onerror.
// Cookies set by the server are kept and sent back, as a browser would.

import http from "node:http";
import https from "node:https";

const JS_TYPES = new Set([
    "text/javascript",
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "text/ecmascript",
    "text/x-javascript",
]);

const CALL = /^\s*(?:\/\*[\s\S]*?\*\/\s*)?([A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*)\s*\(([\s\S]*)\)\s*;?\s*$/;

// installScriptTags makes documentHost.document a minimal DOM whose <head>
// loads scripts as described above. Callbacks are looked up on callbackScope
// (CometD uses window[NAME], Faye uses global[NAME]).
// hooks.onRequest(url, messages) and hooks.onResponse(url, info) observe the
// traffic.
export function installScriptTags(documentHost, callbackScope, hooks = {}) {
    const cookies = new Map();
    const head = {
        tagName: "HEAD",
        children: [],
        appendChild(el) {
            el.parentNode = head;
            head.children.push(el);
            // Browsers fetch asynchronously; so do we.
            setImmediate(() => load(el));
            return el;
        },
        removeChild(el) {
            const i = head.children.indexOf(el);
            if (i >= 0) head.children.splice(i, 1);
            el.parentNode = null;
            return el;
        },
    };
    const document = {
        getElementsByTagName(name) {
            return String(name).toLowerCase() === "head" ? [head] : [];
        },
        createElement(tag) {
            return { tagName: String(tag).toUpperCase(), src: "", async: true, type: "", parentNode: null, onerror: null };
        },
    };
    documentHost.document = document;

    function fail(el, why, info) {
        if (hooks.onResponse) hooks.onResponse(el.src, { error: why, ...info });
        if (typeof el.onerror === "function") el.onerror({ type: "error", message: why });
    }

    function load(el) {
        let url;
        try {
            url = new URL(el.src);
        } catch (e) {
            return fail(el, "bad script src " + el.src);
        }
        const wanted = url.searchParams.get("jsonp");
        let sentMessages;
        try {
            sentMessages = JSON.parse(url.searchParams.get("message"));
        } catch (e) {
            sentMessages = url.searchParams.get("message");
        }
        if (hooks.onRequest) hooks.onRequest(el.src, sentMessages, { jsonp: wanted, urlLength: el.src.length });

        const lib = url.protocol === "https:" ? https : http;
        const headers = { Accept: "*/*" };
        const jar = [...cookies.values()];
        if (jar.length) headers.Cookie = jar.join("; ");
        const req = lib.request(url, { method: "GET", headers }, (res) => {
            for (const sc of [].concat(res.headers["set-cookie"] || [])) {
                const nv = sc.split(";")[0].trim();
                const eq = nv.indexOf("=");
                if (eq > 0) cookies.set(nv.slice(0, eq), nv);
            }
            let body = "";
            res.setEncoding("utf8");
            res.on("data", (c) => (body += c));
            res.on("error", (e) => fail(el, "response error " + e.message));
            res.on("end", () => {
                const ctype = String(res.headers["content-type"] || "").split(";")[0].trim().toLowerCase();
                const nosniff = /nosniff/i.test(String(res.headers["x-content-type-options"] || ""));
                const info = { status: res.statusCode, contentType: res.headers["content-type"] || null, nosniff, body: body.slice(0, 2000) };
                if (res.statusCode < 200 || res.statusCode > 299) {
                    return fail(el, `HTTP ${res.statusCode} for script`, info);
                }
                if (nosniff && !JS_TYPES.has(ctype)) {
                    return fail(el, `browser would block script: nosniff with Content-Type ${ctype || "(none)"}`, info);
                }
                const m = CALL.exec(body);
                if (!m) {
                    return fail(el, "response is not a JSONP call NAME(JSON)", info);
                }
                if (m[1] !== wanted) {
                    return fail(el, `JSONP callback is ${m[1]}, client asked for ${wanted}`, info);
                }
                let arg;
                try {
                    arg = JSON.parse(m[2]);
                } catch (e) {
                    return fail(el, "JSONP argument is not JSON: " + e.message, info);
                }
                if (hooks.onResponse) hooks.onResponse(el.src, { ...info, callback: m[1], messages: arg });
                const fn = m[1].split(".").reduce((o, k) => (o == null ? undefined : o[k]), callbackScope);
                if (typeof fn !== "function") {
                    // In a browser this is a ReferenceError in the script: the
                    // client would silently wait. Usually a late reply after
                    // the client gave up on the request.
                    if (hooks.onResponse) hooks.onResponse(el.src, { error: `callback ${m[1]} no longer exists` });
                    return;
                }
                fn(arg);
            });
        });
        req.on("error", (e) => fail(el, "request error " + e.message));
        req.end();
    }
}
