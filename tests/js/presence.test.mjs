// A room join's presence frames, exactly and in order, as a real Phoenix
// sends them (shared/conformance/PHOENIX_FRAMES.md, "room join ok -> reply,
// presence_state, own presence_diff"): the join reply, the presence_diff
// with the joiner in joins (a broadcast), then presence_state (a push that
// holds the joiner). discuss's RoomChannel does it with one
// `Presence::track_after_join` call in `join`.
import { test, afterEach } from "node:test";
import assert from "node:assert/strict";
import { T, cleanupAll, uid, RawClient } from "./lib/helpers.mjs";

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
  assert.deepEqual(events(alice, room), ["phx_reply", "presence_diff", "presence_state"]);
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
  assert.deepEqual(events(bob, room), ["phx_reply", "presence_diff", "presence_state"]);
  assert.deepEqual(Object.keys(bobState[4]).sort(), ["alice", "bob"]);
  assert.equal(bobState[4].alice.metas[0].phx_ref, ref);
  await alice.waitMsg((m) => m[3] === "presence_diff" && m[4].joins.bob, 3000, "bob's diff at alice", seen);
  assert.deepEqual(events(alice, room, seen), ["presence_diff"]);
});
