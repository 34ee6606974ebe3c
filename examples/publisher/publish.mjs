// Publish to Stardust from Node (18 or later, no packages), through both APIs.
//   node publish.mjs [http://127.0.0.1:5742/comet]
const base = process.argv[2] || "http://127.0.0.1:5742/comet";

// The Stardust API: each m= a JSON object, to channel "news".
const res = await fetch(`${base}/channel/news`, {
  method: "POST",
  body: new URLSearchParams({ m: JSON.stringify({ type: "greeting", from: "node", via: "stardust" }) }),
});
if (!res.ok) throw new Error(`stardust: ${res.status} ${await res.text()}`);
console.log("stardust:", JSON.stringify(await res.json()));

// Bayeux: a batch is a JSON array of messages, POSTed to {base}/bayeux.
async function bayeux(...messages) {
  const r = await fetch(`${base}/bayeux`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(messages),
  });
  return r.json();
}
const [hs] = await bayeux({ channel: "/meta/handshake", version: "1.0", supportedConnectionTypes: ["long-polling"] });
if (!hs.successful) throw new Error(`bayeux: handshake failed: ${hs.error}`);
const [published] = await bayeux(
  { channel: "/stardust/news", clientId: hs.clientId, data: { type: "greeting", from: "node", via: "bayeux" } },
  { channel: "/meta/disconnect", clientId: hs.clientId },
);
if (!published.successful) throw new Error(`bayeux: publish failed: ${published.error}`);
console.log("bayeux: published");
