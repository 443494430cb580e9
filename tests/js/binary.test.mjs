// Binary payloads (PROTOCOL.md §6) through phoenix.js: an ArrayBuffer payload
// is sent as a V2 binary push frame (kind 0); CommentsChannel's `ping` echoes
// any payload unchanged, so the answer is a binary reply frame (kind 1), which
// phoenix.js decodes to `{status, response: ArrayBuffer}` itself.
//
// Over LongPoll a binary push travels up (base64 in the ndjson POST) but the
// binary reply cannot come back: LongPoll's GET answers carry text frames
// only (PROTOCOL.md §6, §12), so phoenix.js sees a timeout; the last test pins
// that the session survives it.
//
// Server-initiated binary pushes and broadcasts (kinds 0 and 2 server→client)
// have no contract-compatible trigger in the discuss example (any event other
// than the listed ones is "unknown event"); the Rust tests cover them.
import { test, afterEach } from "node:test";
import assert from "node:assert/strict";
import { T, cleanupAll, commentsTopic, openSocket, joinOk, push, RawClient } from "./lib/helpers.mjs";

afterEach(cleanupAll);

/** An ArrayBuffer holding `bytes`. */
const buf = (bytes) => new Uint8Array(bytes).buffer;
const bytesOf = (ab) => [...new Uint8Array(ab)];

test("phoenix.js: binary ping round trip, reply ok with an ArrayBuffer equal to what was sent", T, async () => {
  const socket = await openSocket({ transport: "websocket" });
  const ch = socket.channel(commentsTopic());
  await joinOk(ch);

  const all = Array.from({ length: 256 }, (_, i) => i);
  const big = Array.from({ length: 70_000 }, (_, i) => (i * 31 + 7) % 256);
  for (const bytes of [[1, 2, 3], [0], all, [0x5b, 0x22, 0x7b], big, []]) {
    const r = await push(ch, "ping", buf(bytes));
    assert.equal(r.status, "ok", `ping of ${bytes.length} bytes: ${JSON.stringify(r)}`);
    assert.ok(r.response instanceof ArrayBuffer, `the response is an ArrayBuffer, got ${Object.prototype.toString.call(r.response)}`);
    assert.deepEqual(bytesOf(r.response), bytes, `${bytes.length} bytes echoed unchanged`);
  }
  // JSON and binary pushes mix freely on one channel
  assert.deepEqual(await push(ch, "ping", { json: true }), { status: "ok", response: { json: true } });
  const again = await push(ch, "ping", buf([9, 8, 7]));
  assert.deepEqual(bytesOf(again.response), [9, 8, 7]);
});

test("raw V2: a binary push is answered with the exact binary reply frame (kind 1)", T, async () => {
  const raw = await RawClient.connect();
  const topic = commentsTopic();
  const jr = await raw.joinOk(topic);
  const enc = new TextEncoder();
  const [j, r, t, e] = [jr, "b1", topic, "ping"].map((s) => enc.encode(s));
  const payload = [0xff, 0x00, 0x7b];
  const frame = Buffer.from([0, j.length, r.length, t.length, e.length, ...j, ...r, ...t, ...e, ...payload]);
  const from = raw.frames.length;
  raw.ws.send(frame, { binary: true });
  await waitBinary(raw, from);
  const got = raw.frames.slice(from).find((f) => f.binary);
  const status = enc.encode("ok");
  const expected = Buffer.from([1, j.length, r.length, t.length, status.length, ...j, ...r, ...t, ...status, ...payload]);
  assert.deepEqual([...got.data], [...expected], "kind 1 | join_ref | ref | topic | status | payload");
});

/** Waits for a binary frame from index `from` on a RawClient. */
async function waitBinary(raw, from, ms = 3000) {
  const deadline = Date.now() + ms;
  while (!raw.frames.slice(from).some((f) => f.binary)) {
    if (Date.now() > deadline) throw new Error(`no binary frame within ${ms}ms; got ${JSON.stringify(raw.frames.slice(from).map((f) => f.text))}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("LongPoll: a binary push is taken, its binary reply cannot come back (timeout), the channel keeps working", T, async () => {
  const socket = await openSocket({ transport: "longpoll" });
  const ch = socket.channel(commentsTopic());
  await joinOk(ch);
  assert.deepEqual(await push(ch, "ping", buf([1, 2, 3]), 800), { status: "timeout" });
  assert.deepEqual(await push(ch, "ping", { after: "binary" }), { status: "ok", response: { after: "binary" } });
  assert.equal(ch.state, "joined");
});
