// Channel lifecycle on one socket: crash isolation, duplicate join, stale
// join_ref, leave, unmatched topic, the channel cap, payloads of the wrong type.
import { test, afterEach } from "node:test";
import assert from "node:assert/strict";
import { T, cleanupAll, commentsTopic, openSocket, joinOk, push, sleep, uid, RawClient } from "./lib/helpers.mjs";

afterEach(cleanupAll);

const UNMATCHED = { status: "error", response: { reason: "unmatched topic" } };

test("crash kills only that channel: exact phx_error, other channel alive, pushes to it unmatched, rejoin works", T, async () => {
  const raw = await RawClient.connect();
  const t1 = commentsTopic();
  const t2 = commentsTopic();
  const jr1 = await raw.joinOk(t1);
  const jr2 = await raw.joinOk(t2);

  raw.send([jr1, raw.ref(), t1, "crash", {}]);
  const err = await raw.waitMsg((m) => m[3] === "phx_error", 3000, "phx_error");
  assert.deepEqual(err, [jr1, jr1, t1, "phx_error", { reason: "channel_crash" }]);

  // the other channel on the same socket still answers
  const ping = await raw.call(jr2, t2, "ping", { alive: true });
  assert.deepEqual(ping.slice(2), [t2, "phx_reply", { status: "ok", response: { alive: true } }]);
  assert.equal(ping[0], jr2);

  // the crashed channel is gone: a push with its old join_ref is unmatched
  const ref = raw.ref();
  raw.send([jr1, ref, t1, "ping", {}]);
  assert.deepEqual(await raw.waitReply(ref), [null, ref, t1, "phx_reply", UNMATCHED]);

  // a rejoin is a fresh join
  const { joinRef: jr3, reply } = await raw.join(t1);
  assert.deepEqual(reply, [jr3, jr3, t1, "phx_reply", { status: "ok", response: { hey: "there", comments: [] } }]);
  const again = await raw.call(jr3, t1, "ping", { back: 1 });
  assert.deepEqual(again, [jr3, again[1], t1, "phx_reply", { status: "ok", response: { back: 1 } }]);
  assert.equal(raw.closed, null, "the socket stayed open");
});

test("duplicate join of a topic: new join ok, old join_ref closed, broadcasts arrive once", T, async () => {
  const topic = commentsTopic();
  const raw = await RawClient.connect();
  const oldRef = await raw.joinOk(topic);
  const { joinRef: newRef, reply } = await raw.join(topic);
  assert.deepEqual(reply, [newRef, newRef, topic, "phx_reply", { status: "ok", response: { hey: "there", comments: [] } }]);
  const close = await raw.waitMsg((m) => m[3] === "phx_close", 3000, "phx_close of the old join");
  assert.deepEqual(close, [oldRef, oldRef, topic, "phx_close", {}]);

  // the channel answers on the new join_ref
  const ping = await raw.call(newRef, topic, "ping", { n: 1 });
  assert.deepEqual(ping, [newRef, ping[1], topic, "phx_reply", { status: "ok", response: { n: 1 } }]);

  // a comment from another socket reaches this one exactly once
  const other = await RawClient.connect();
  const ojr = await other.joinOk(topic);
  const content = `once ${uid()}`;
  await other.call(ojr, topic, "comment:add", { content });
  await raw.waitMsg((m) => m[3] === `${topic}:new`, 3000, "the broadcast");
  await sleep(300);
  assert.deepEqual(
    raw.msgs((m) => m[3] === `${topic}:new`),
    [[null, null, topic, `${topic}:new`, { comment: { content } }]],
    "one broadcast, not one per join",
  );
  assert.equal(raw.msgs((m) => m[3] === "phx_close").length, 1, "only the old join was closed");
});

test("stale join_ref: after a rejoin the old join_ref is dropped silently, a null join_ref is accepted", T, async () => {
  const topic = commentsTopic();
  const raw = await RawClient.connect();
  const oldRef = await raw.joinOk(topic);
  const newRef = await raw.joinOk(topic);
  await raw.waitMsg((m) => m[3] === "phx_close", 3000, "phx_close of the old join");

  const staleRef = raw.ref();
  raw.send([oldRef, staleRef, topic, "ping", { stale: true }]);
  await raw.expectNone((m) => m[1] === staleRef, 500, "reply to a message with the stale join_ref");

  const nullRef = raw.ref();
  raw.send([null, nullRef, topic, "ping", { via: "null" }]);
  const r = await raw.waitReply(nullRef);
  assert.deepEqual(r.slice(1), [nullRef, topic, "phx_reply", { status: "ok", response: { via: "null" } }]);

  const cur = await raw.call(newRef, topic, "ping", { via: "current" });
  assert.deepEqual(cur, [newRef, cur[1], topic, "phx_reply", { status: "ok", response: { via: "current" } }]);
});

test("stale join_ref on phx_leave is dropped too: the current channel stays joined", T, async () => {
  const topic = commentsTopic();
  const raw = await RawClient.connect();
  const oldRef = await raw.joinOk(topic);
  const newRef = await raw.joinOk(topic);
  await raw.waitMsg((m) => m[3] === "phx_close", 3000, "phx_close of the old join");
  const closesBefore = raw.msgs((m) => m[3] === "phx_close").length;

  const leaveRef = raw.ref();
  raw.send([oldRef, leaveRef, topic, "phx_leave", {}]);
  await raw.expectNone((m) => m[1] === leaveRef, 500, "reply to a leave with the stale join_ref");
  assert.equal(raw.msgs((m) => m[3] === "phx_close").length, closesBefore, "no phx_close for the current join");
  const ping = await raw.call(newRef, topic, "ping", {});
  assert.equal(ping[4].status, "ok", JSON.stringify(ping));
});

test("leave: reply ok then phx_close; leaving a topic not joined is ok echoing the join_ref", T, async () => {
  const topic = commentsTopic();
  const raw = await RawClient.connect();
  const jr = await raw.joinOk(topic);
  const from = raw.frames.length;
  const ref = raw.ref();
  raw.send([jr, ref, topic, "phx_leave", {}]);
  await raw.waitMsg((m) => m[3] === "phx_close", 3000, "phx_close after leave", from);
  const after = raw.frames.slice(from).map((f) => f.msg);
  assert.deepEqual(after, [
    [jr, ref, topic, "phx_reply", { status: "ok", response: {} }],
    [jr, jr, topic, "phx_close", {}],
  ]);

  // the channel is gone
  const pref = raw.ref();
  raw.send([jr, pref, topic, "ping", {}]);
  assert.deepEqual(await raw.waitReply(pref), [null, pref, topic, "phx_reply", UNMATCHED]);

  // leave for a topic never joined: ok, echoing whatever join_ref was sent
  const never = commentsTopic();
  const lref = raw.ref();
  raw.send(["77", lref, never, "phx_leave", {}]);
  assert.deepEqual(await raw.waitReply(lref), ["77", lref, never, "phx_reply", { status: "ok", response: {} }]);
  await raw.expectNone((m) => m[2] === never && m[3] === "phx_close", 200, "phx_close for a topic never joined");
});

test("join of a topic no route matches: error unmatched topic with a null join_ref", T, async () => {
  const raw = await RawClient.connect();
  const ref = raw.ref();
  raw.send([ref, ref, "nope:1", "phx_join", {}]);
  assert.deepEqual(await raw.waitReply(ref), [null, ref, "nope:1", "phx_reply", UNMATCHED]);
  // the socket is fine afterwards
  await raw.joinOk(commentsTopic());
});

/** Joins `n` fresh topics at once on `raw`; resolves [{topic, joinRef}]. */
async function joinMany(raw, n) {
  const joins = [];
  for (let i = 0; i < n; i++) {
    const topic = commentsTopic();
    const ref = raw.ref();
    raw.send([ref, ref, topic, "phx_join", {}]);
    joins.push({ topic, joinRef: ref });
  }
  const replies = await Promise.all(joins.map((j) => raw.waitReply(j.joinRef, 5000)));
  replies.forEach((r, i) => assert.equal(r[4].status, "ok", `join #${i + 1}: ${JSON.stringify(r)}`));
  return joins;
}

const TOO_MANY = { status: "error", response: { reason: "too many channels joined" } };

test("channel cap: 100 channels per socket, the 101st join is refused, a leave frees a slot", T, async () => {
  const raw = await RawClient.connect();
  const joins = await joinMany(raw, 100);

  const { joinRef: jr101, reply } = await raw.join(commentsTopic());
  const t101 = reply[2];
  assert.deepEqual(reply, [jr101, jr101, t101, "phx_reply", TOO_MANY]);
  // the refused join left nothing behind
  const pref = raw.ref();
  raw.send([jr101, pref, t101, "ping", {}]);
  assert.deepEqual(await raw.waitReply(pref), [null, pref, t101, "phx_reply", UNMATCHED]);

  // existing channels are unaffected
  const ping = await raw.call(joins[99].joinRef, joins[99].topic, "ping", { n: 100 });
  assert.equal(ping[4].status, "ok", JSON.stringify(ping));

  // leave one, then a new join fits, and the one after is refused again
  const lref = raw.ref();
  raw.send([joins[0].joinRef, lref, joins[0].topic, "phx_leave", {}]);
  assert.equal((await raw.waitReply(lref))[4].status, "ok");
  const fresh = await raw.join(commentsTopic());
  assert.equal(fresh.reply[4].status, "ok", JSON.stringify(fresh.reply));
  const over = await raw.join(commentsTopic());
  assert.deepEqual(over.reply, [over.joinRef, over.joinRef, over.reply[2], "phx_reply", TOO_MANY]);
  assert.equal(raw.closed, null, "the socket stayed open");
});

test("channel cap: the limit is per socket; at the cap a duplicate join still works and unmatched stays unmatched", T, async () => {
  const raw = await RawClient.connect();
  const joins = await joinMany(raw, 100);

  // duplicate join of a joined topic replaces it, so it is not refused
  const dup = await raw.join(joins[5].topic);
  assert.equal(dup.reply[4].status, "ok", `duplicate join at the cap: ${JSON.stringify(dup.reply)}`);
  // routing comes before the cap
  const ref = raw.ref();
  raw.send([ref, ref, "nope:2", "phx_join", {}]);
  assert.deepEqual(await raw.waitReply(ref), [null, ref, "nope:2", "phx_reply", UNMATCHED]);

  // another socket is not affected by this one's cap
  const other = await RawClient.connect();
  await other.joinOk(commentsTopic());
});

test("comment:add with a payload that is not an object: error reply, the channel and socket keep working", T, async () => {
  const socket = await openSocket();
  const topic = commentsTopic();
  const ch = socket.channel(topic);
  await joinOk(ch);
  const errors = [];
  ch.onError((e) => errors.push(e));

  for (const payload of ["x", [1], 5, null]) {
    const r = await push(ch, "comment:add", payload);
    assert.equal(r.status, "error", `comment:add ${JSON.stringify(payload)} -> ${JSON.stringify(r)}`);
    assert.ok(r.response !== null && typeof r.response === "object", `error response is an object: ${JSON.stringify(r.response)}`);
  }
  assert.deepEqual(errors, [], "the channel did not crash");
  assert.deepEqual(await push(ch, "ping", { still: "here" }), { status: "ok", response: { still: "here" } });
  assert.deepEqual(await push(ch, "comment:add", { content: "valid" }), { status: "ok", response: {} });

  // nothing of the bad payloads was kept
  const other = await openSocket();
  assert.deepEqual(await joinOk(other.channel(topic)), { hey: "there", comments: [{ content: "valid" }] });
});

test("comment:add with an array payload is refused, not read positionally as {content}", T, async () => {
  // serde reads a struct from a JSON array field by field; a channel payload
  // that is not an object must not be taken for one
  const topic = commentsTopic();
  const raw = await RawClient.connect();
  const jr = await raw.joinOk(topic);
  const r = await raw.call(jr, topic, "comment:add", ["hello"]);
  assert.equal(r[4].status, "error", `comment:add ["hello"] -> ${JSON.stringify(r)}`);
  assert.ok(r[4].response !== null && typeof r[4].response === "object", JSON.stringify(r));
  await raw.expectNone((m) => m[3] === `${topic}:new`, 200, "broadcast of an array payload");
});
