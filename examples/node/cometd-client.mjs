// CometD's JavaScript client in Node against Stardust: subscribe to Stardust
// channel "foo" (Bayeux channel /stardust/foo), publish to it, print what
// arrives, call the built-in echo service, disconnect.
//   npm install cometd cometd-nodejs-client && node cometd-client.mjs http://127.0.0.1:5742/comet/cometd
import { adapt } from "cometd-nodejs-client";
adapt(); // gives CometD the XMLHttpRequest and WebSocket it expects in a browser
const { CometD } = await import("cometd");

const url = process.argv[2] || "http://127.0.0.1:5742/comet/cometd";
const cometd = new CometD();
cometd.configure({ url });

cometd.handshake((reply) => {
  if (!reply.successful) throw new Error("handshake failed: " + reply.error);
  cometd.subscribe("/stardust/foo", (message) => {
    console.log("received", JSON.stringify(message.data));
    cometd.remoteCall("echo", { text: "hello" }, 5000, (answer) => {
      console.log("echo", JSON.stringify(answer.data));
      cometd.disconnect();
    });
  }, (subscribed) => {
    if (subscribed.successful) cometd.publish("/stardust/foo", { type: "TestMessage", data: [3, 2, 1] });
  });
});
