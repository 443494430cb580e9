// The README "done when" flow: connect, join, comment, live broadcast.
import { test, afterEach } from "node:test";
import assert from "node:assert/strict";
import { T, cleanupAll, commentsTopic, openSocket, joinOk, push, nextEvent, uid, sleep, RawClient } from "./lib/helpers.mjs";

afterEach(cleanupAll);

test("phoenix.js: join a fresh topic, add a comment, a second client sees the broadcast", T, async () => {
  const topic = commentsTopic();
  const [a, b] = await Promise.all([openSocket({ params: { user_id: "u-flow" } }), openSocket()]);
  const chA = a.channel(topic);
  const chB = b.channel(topic);
  assert.deepEqual(await joinOk(chA), { hey: "there", comments: [] });
  assert.deepEqual(await joinOk(chB), { hey: "there", comments: [] });

  const seenB = [];
  chB.on(`${topic}:new`, (p) => seenB.push(p));
  const gotA = nextEvent(chA, `${topic}:new`);
  const gotB = nextEvent(chB, `${topic}:new`);
  const content = `hello ${uid()}`;
  const r = await push(chA, "comment:add", { content });
  assert.deepEqual(r, { status: "ok", response: {} });
  assert.deepEqual(await gotA, { comment: { content } }, "the sender gets the broadcast too");
  assert.deepEqual(await gotB, { comment: { content } }, "the other client gets the broadcast");
  await sleep(200);
  assert.equal(seenB.length, 1, "exactly one broadcast per comment");

  // a later joiner sees the comment in its join reply
  const c = await openSocket();
  assert.deepEqual(await joinOk(c.channel(topic)), { hey: "there", comments: [{ content }] });
});

test("raw V2: the sender gets the broadcast frame before its own reply, exact frames", T, async () => {
  const topic = commentsTopic();
  const sender = await RawClient.connect();
  const other = await RawClient.connect();
  const { joinRef: jr, reply } = await sender.join(topic);
  assert.deepEqual(reply, [jr, jr, topic, "phx_reply", { status: "ok", response: { hey: "there", comments: [] } }]);
  await other.joinOk(topic);

  const ref = sender.ref();
  const from = sender.frames.length;
  sender.send([jr, ref, topic, "comment:add", { content: "first!" }]);
  await sender.waitReply(ref);
  const bcast = [null, null, topic, `${topic}:new`, { comment: { content: "first!" } }];
  const after = sender.frames.slice(from).map((f) => f.msg);
  assert.deepEqual(after, [bcast, [jr, ref, topic, "phx_reply", { status: "ok", response: {} }]], "broadcast, then reply, nothing else");

  assert.deepEqual(await other.waitMsg((m) => m[3] === `${topic}:new`), bcast);
});
