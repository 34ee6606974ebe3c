// Faye's client against Stardust: subscribe to Stardust channel "foo" (Bayeux
// channel /stardust/foo), publish to it, print what arrives, disconnect.
//   npm install faye && node faye-client.mjs http://127.0.0.1:5742/comet/bayeux
import faye from "faye";

const url = process.argv[2] || "http://127.0.0.1:5742/comet/bayeux";
const client = new faye.Client(url);

const subscription = client.subscribe("/stardust/foo", (message) => {
  console.log("received", JSON.stringify(message));
  client.disconnect();
});
await subscription; // the server has acknowledged the subscription
await client.publish("/stardust/foo", { type: "TestMessage", data: [3, 2, 1] });
