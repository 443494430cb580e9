// A phoenix.js peer for the Rust client's tests (channels-runtime/tests/client.rs):
// the official client in the same topic as the Rust one, reporting what it
// sees as one JSON object per line on stdout.
//
//   node client-peer.mjs URL broadcast TOPIC   joins TOPIC, prints {"joined":…};
//       prints {"received": payload} for the first TOPIC:new, then pushes
//       comment:add {"content":"from phoenix.js"} and prints {"pushed": reply}
//   node client-peer.mjs URL presence TOPIC NAME   joins TOPIC as NAME, prints
//       {"presence": [keys…]} on every sync
//
// It exits when stdin closes (the test ends), or after 20 s whatever happens.
import { Socket, Presence } from "phoenix";
import WebSocket from "ws";

const [url, mode, topic, name] = process.argv.slice(2);
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const fail = (why) => {
  say({ error: String(why) });
  process.exit(1);
};

setTimeout(() => fail("no end within 20 s"), 20_000).unref();
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();

const socket = new Socket(url, { transport: WebSocket, params: { user_id: "js" } });
socket.connect();

if (mode === "broadcast") {
  const chan = socket.channel(topic, {});
  let received = false;
  chan.on(`${topic}:new`, (payload) => {
    if (received) return;
    received = true;
    say({ received: payload });
    chan
      .push("comment:add", { content: "from phoenix.js" })
      .receive("ok", (reply) => say({ pushed: reply }))
      .receive("error", (e) => fail(`push refused: ${JSON.stringify(e)}`))
      .receive("timeout", () => fail("push timeout"));
  });
  chan
    .join()
    .receive("ok", (reply) => say({ joined: reply }))
    .receive("error", (e) => fail(`join refused: ${JSON.stringify(e)}`));
} else if (mode === "presence") {
  const chan = socket.channel(topic, { name });
  const presence = new Presence(chan);
  presence.onSync(() => say({ presence: presence.list((key) => key).sort() }));
  chan
    .join()
    .receive("ok", () => say({ joined: true }))
    .receive("error", (e) => fail(`join refused: ${JSON.stringify(e)}`));
} else {
  fail(`unknown mode ${mode}`);
}
