// Binary payloads through phoenix.js, against the `relay` example (started
// here on a free port): ArrayBuffer updates relayed unchanged to the other
// subscribers of a doc (V2 binary broadcasts), replayed to a late joiner
// right after its join reply, refused when sent as JSON, never leaking to
// another doc.
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { Socket } from "phoenix";
import WebSocket from "ws";
import { settle, sleep, startExample, uid, waitUntil, withTimeout } from "./lib/helpers.mjs";

const T = { timeout: 15_000 };

let server;
let base; // ws://127.0.0.1:PORT/socket
const sockets = new Set();

before(async () => {
  const started = await startExample("relay", "RELAY_BIN");
  server = started.proc;
  base = `ws://127.0.0.1:${started.port}/socket`;
});

after(() => server && server.kill());

afterEach(() => {
  for (const s of sockets) s.disconnect();
  sockets.clear();
});

async function connect(name) {
  const socket = new Socket(base, { transport: WebSocket, timeout: 5000, reconnectAfterMs: () => 100, rejoinAfterMs: () => 100 });
  sockets.add(socket);
  await withTimeout(
    new Promise((resolve, reject) => {
      socket.onOpen(resolve);
      socket.onError(() => reject(new Error("socket error")));
      socket.connect();
    }),
    5000,
    `${name} connected`,
  );
  return socket;
}

/** Joins `topic` on a new socket; `updates` collects every `update` payload, from before the join reply on. */
async function member(name, topic) {
  const socket = await connect(name);
  const channel = socket.channel(topic);
  const updates = [];
  const order = [];
  channel.on("update", (p) => {
    updates.push(p);
    order.push("update");
  });
  // marked in the reply callback itself: an awaited promise would resolve
  // only after the frames that arrived with the reply were dispatched
  const r = await settle(channel.join(5000).receive("ok", () => order.push("joined")));
  assert.equal(r.status, "ok", `${name} joined ${topic}: ${JSON.stringify(r)}`);
  return { channel, updates, order };
}

/** An ArrayBuffer of `n` bytes, a pattern depending on `seed`, so different updates differ. */
function update(n, seed) {
  const bytes = new Uint8Array(n);
  for (let i = 0; i < n; i++) bytes[i] = (i * 31 + seed * 17 + 7) % 256;
  return bytes.buffer;
}

/** Asserts `got` is exactly the list of ArrayBuffers `sent`, byte for byte and in order. */
function assertSame(got, sent, who) {
  assert.equal(got.length, sent.length, `${who}: ${got.length} updates, expected ${sent.length}`);
  got.forEach((p, i) => {
    assert.ok(p instanceof ArrayBuffer, `${who}: update ${i} is an ArrayBuffer, got ${Object.prototype.toString.call(p)}`);
    assert.ok(Buffer.from(p).equals(Buffer.from(sent[i])), `${who}: update ${i} (${sent[i].byteLength} bytes) arrived unchanged`);
  });
}

const SIZES = [1, 1024, 70_000];

test("updates reach the doc's other subscribers byte for byte, in order; a late joiner gets them replayed", T, async () => {
  const topic = `doc:${uid()}`;
  const a = await member("A", topic);
  const b = await member("B", topic);
  const c = await member("C", topic);
  const other = await member("E", `doc:${uid()}`);

  const sent = SIZES.map((n, i) => update(n, i));
  for (const [i, u] of sent.entries()) {
    assert.deepEqual(await settle(a.channel.push("update", u, 5000)), { status: "ok", response: {} }, `push ${i}`);
  }
  await waitUntil(() => b.updates.length >= sent.length && c.updates.length >= sent.length, 5000, "B and C to get every update");
  // A's updates went out before its replies, so anything meant for A would be here by now.
  assertSame(b.updates, sent, "B");
  assertSame(c.updates, sent, "C");
  assert.equal(a.updates.length, 0, "the sender does not get its own updates back");

  const d = await member("D", topic);
  await waitUntil(() => d.updates.length >= sent.length, 5000, "D to get the replay");
  assertSame(d.updates, sent, "D (replayed)");
  assert.deepEqual(d.order.slice(0, 2), ["joined", "update"], "the replay follows the join reply");

  // B's update after the replay reaches A, C and D, not B.
  const more = update(300, 9);
  assert.equal((await settle(b.channel.push("update", more, 5000))).status, "ok");
  await waitUntil(() => a.updates.length === 1 && c.updates.length === 4 && d.updates.length === 4, 5000, "B's update to reach A, C, D");
  assertSame(a.updates, [more], "A");
  assertSame(c.updates.slice(3), [more], "C");
  assertSame(d.updates.slice(3), [more], "D");

  await sleep(200);
  assert.equal(b.updates.length, 3, "B got nothing of its own");
  assert.equal(other.updates.length, 0, "a client on another doc receives nothing");
});

test("a JSON update is refused with {reason: 'updates are binary'} and relayed to no one", T, async () => {
  const topic = `doc:${uid()}`;
  const a = await member("A", topic);
  const b = await member("B", topic);
  assert.deepEqual(await settle(a.channel.push("update", { not: "binary" }, 5000)), {
    status: "error",
    response: { reason: "updates are binary" },
  });
  // the channel is still joined and relays what follows
  const u = update(5, 1);
  assert.equal((await settle(a.channel.push("update", u, 5000))).status, "ok");
  await waitUntil(() => b.updates.length >= 1, 5000, "B to get the binary update");
  assertSame(b.updates, [u], "B");
  // and a late joiner is replayed the binary update only
  const d = await member("D", topic);
  await waitUntil(() => d.updates.length >= 1, 5000, "D's replay");
  await sleep(100);
  assertSame(d.updates, [u], "D");
});
