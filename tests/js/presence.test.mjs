// Presence diffs are batched per room per broadcast period (100 ms): a room
// joining at once gets a few diffs of many entries each, not one diff per
// join to every member. phoenix.js's Presence merges them as it merges
// single ones: every member ends up listing every other, and leaves in a
// batch take members out.
import { test, afterEach } from "node:test";
import assert from "node:assert/strict";
import { Presence, cleanupAll, openSocket, joinOk, uid, waitUntil } from "./lib/helpers.mjs";

afterEach(cleanupAll);

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
