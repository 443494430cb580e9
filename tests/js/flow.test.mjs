// The README "done when" flow at the frame level: broadcast before reply (the
// phoenix.js flow runs over both transports in websocket/longpoll.test.mjs).
import { test, afterEach } from "node:test";
import assert from "node:assert/strict";
import { T, cleanupAll, commentsTopic, joinOk, RawClient } from "./lib/helpers.mjs";

afterEach(cleanupAll);

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
