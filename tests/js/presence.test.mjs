// A room join's presence frames, exactly and in order, as a real Phoenix
// sends them (shared/conformance/PHOENIX_FRAMES.md, "room join ok -> reply,
// presence_state, own presence_diff"): the join reply, the presence_diff
// with the joiner in joins (a broadcast), then presence_state (a push that
// holds the joiner). discuss's RoomChannel does it with one
// `Presence::track_after_join` call in `join`.
//
// Presence diffs are also batched per room per broadcast period (100 ms): a
// room joining at once gets a few diffs of many entries each, not one diff
// per join to every member. phoenix.js's Presence merges them as it merges
// single ones (by phx_ref, so a batch that repeats a join the joiner was
// pushed already changes nothing): every member ends up listing every
// other, and leaves in a batch take members out.
import { test, afterEach } from "node:test";
import assert from "node:assert/strict";
import { T, Presence, cleanupAll, openSocket, joinOk, uid, waitUntil, RawClient } from "./lib/helpers.mjs";

afterEach(cleanupAll);

/** The event names of `raw`'s frames on `topic`, from index `from`. */
function events(raw, topic, from = 0) {
  return raw.frames.slice(from).filter((f) => f.msg && f.msg[2] === topic).map((f) => f.msg[3]);
}

test("a room join: reply, own presence_diff, then presence_state, as from Phoenix; others get the diff alone", T, async () => {
  const room = `room:order${uid()}`;
  const alice = await RawClient.connect();
  const aliceRef = await alice.joinOk(room, { name: "alice" });
  const aliceState = await alice.waitMsg((m) => m[3] === "presence_state", 3000, "alice's presence_state");
  // The period's batch (alice's join again, for everyone) may follow.
  assert.deepEqual(events(alice, room).slice(0, 3), ["phx_reply", "presence_diff", "presence_state"]);
  const [, , , , aliceDiff] = alice.msgs((m) => m[3] === "presence_diff")[0];
  const ref = aliceDiff.joins.alice.metas[0].phx_ref;
  assert.deepEqual(alice.msgs((m) => m[3] === "presence_diff")[0], [null, null, room, "presence_diff", aliceDiff]);
  assert.deepEqual(aliceDiff.leaves, {});
  assert.deepEqual(aliceState, [aliceRef, null, room, "presence_state", { alice: aliceDiff.joins.alice }]);
  assert.equal(typeof ref, "string");

  const seen = alice.frames.length;
  const bob = await RawClient.connect();
  await bob.joinOk(room, { name: "bob" });
  const bobState = await bob.waitMsg((m) => m[3] === "presence_state", 3000, "bob's presence_state");
  assert.deepEqual(events(bob, room).slice(0, 3), ["phx_reply", "presence_diff", "presence_state"]);
  assert.deepEqual(Object.keys(bobState[4]).sort(), ["alice", "bob"]);
  assert.equal(bobState[4].alice.metas[0].phx_ref, ref);
  await alice.waitMsg((m) => m[3] === "presence_diff" && m[4].joins.bob, 3000, "bob's diff at alice", seen);
  assert.ok(events(alice, room, seen).every((e) => e === "presence_diff"), "alice gets bob as a presence_diff only");
});

const MEMBERS = 40;

/** Joins `room` as `name`; what its phoenix.js Presence lists, and its diffs. */
async function member(room, name) {
  const socket = await openSocket();
  const channel = socket.channel(room, { name });
  const presence = new Presence(channel);
  let diffs = 0;
  channel.on("presence_diff", () => (diffs += 1));
  await joinOk(channel);
  return {
    name,
    socket,
    channel,
    names: () => presence.list((key) => key).sort(),
    diffs: () => diffs,
  };
}

test("a room joining at once gets batched diffs that phoenix.js Presence merges", { timeout: 30_000 }, async () => {
  const room = `room:r${uid()}`;
  const names = Array.from({ length: MEMBERS }, (_, i) => `m${String(i).padStart(2, "0")}-${uid()}`).sort();
  const first = await member(room, names[0]);
  const others = await Promise.all(names.slice(1).map((name) => member(room, name)));
  const all = [first, ...others];
  await waitUntil(() => all.every((m) => m.names().length === MEMBERS), 10_000, "every member lists every other");
  for (const m of all) assert.deepEqual(m.names(), names);
  // One diff per join would have been MEMBERS - 1 diffs to the first member.
  assert.ok(first.diffs() < MEMBERS / 2, `${first.diffs()} diffs for ${MEMBERS - 1} joins`);

  // Half of them leave at once: a batch of leaves.
  const leaving = others.slice(0, MEMBERS / 2);
  await Promise.all(leaving.map((m) => new Promise((resolve) => m.channel.leave().receive("ok", resolve))));
  const staying = names.filter((n) => !leaving.some((m) => m.name === n));
  await waitUntil(() => first.names().length === staying.length, 10_000, "the leaves reached the first member");
  assert.deepEqual(first.names(), staying);
});
