// End-to-end cases with phoenix.js that must pass the same way over every
// transport: websocket.test.mjs runs them over WebSocket, longpoll.test.mjs
// over LongPoll. Each case takes the transport ("websocket" | "longpoll") and
// opens every socket with it.
import { test, afterEach } from "node:test";
import assert from "node:assert/strict";
import {
  T,
  cleanupAll,
  commentsTopic,
  makeSocket,
  openSocket,
  joinOk,
  join,
  push,
  nextEvent,
  waitUntil,
  withTimeout,
  sleep,
  uid,
  postDisconnect,
  Presence,
} from "./helpers.mjs";

/** Sorted names of a phoenix.js Presence, with the number of metas of each. */
function present(presence) {
  return presence
    .list((name, { metas }) => ({ name, metas: metas.length, onlineAt: typeof metas[0].online_at }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** Joins `room:NAME` as `name`; resolves `{ channel, presence }` once joined. */
async function joinRoom(socket, room, name) {
  const channel = socket.channel(room, { name });
  const presence = new Presence(channel);
  await joinOk(channel);
  return { channel, presence };
}

export const cases = {
  async "flow: join a fresh topic, add a comment, a second client sees the broadcast, a later joiner reads it"(transport) {
    const topic = commentsTopic();
    const [a, b] = await Promise.all([openSocket({ transport, params: { user_id: `u-${uid()}` } }), openSocket({ transport })]);
    const chA = a.channel(topic);
    const chB = b.channel(topic);
    assert.deepEqual(await joinOk(chA), { hey: "there", comments: [] });
    assert.deepEqual(await joinOk(chB), { hey: "there", comments: [] });

    const seenB = [];
    chB.on(`${topic}:new`, (p) => seenB.push(p));
    const gotA = nextEvent(chA, `${topic}:new`);
    const gotB = nextEvent(chB, `${topic}:new`);
    const content = `hello ${uid()}`;
    assert.deepEqual(await push(chA, "comment:add", { content }), { status: "ok", response: {} });
    assert.deepEqual(await gotA, { comment: { content } }, "the sender gets the broadcast too");
    assert.deepEqual(await gotB, { comment: { content } }, "the other client gets the broadcast");
    await sleep(200);
    assert.equal(seenB.length, 1, "exactly one broadcast per comment");

    const c = await openSocket({ transport });
    assert.deepEqual(await joinOk(c.channel(topic)), { hey: "there", comments: [{ content }] });
  },

  async "comments: blank comment refused, ping echoes, unknown event, invalid and unmatched topics"(transport) {
    const socket = await openSocket({ transport });
    const topic = commentsTopic();
    const ch = socket.channel(topic);
    await joinOk(ch);
    const broadcasts = [];
    ch.on(`${topic}:new`, (p) => broadcasts.push(p));

    const blank = { status: "error", response: { errors: { content: ["can't be blank"] } } };
    assert.deepEqual(await push(ch, "comment:add", { content: "   " }), blank);
    assert.deepEqual(await push(ch, "comment:add", {}), blank);
    assert.deepEqual(await push(ch, "comment:add", { content: 42 }), blank);
    const nested = { a: [1, "two", null, { three: true }], s: "é ✓" };
    assert.deepEqual(await push(ch, "ping", nested), { status: "ok", response: nested });
    assert.deepEqual(await push(ch, "nope", {}), { status: "error", response: { reason: "unknown event" } });
    await sleep(200);
    assert.deepEqual(broadcasts, [], "nothing was broadcast");

    assert.deepEqual(await join(socket.channel("comments:abc")), { status: "error", response: { reason: "invalid topic" } });
    assert.deepEqual(await join(socket.channel(`nope:${uid()}`)), { status: "error", response: { reason: "unmatched topic" } });
    // the socket and the first channel are fine afterwards
    assert.deepEqual(await push(ch, "ping", { still: "here" }), { status: "ok", response: { still: "here" } });
  },

  async "crash: the channel rejoins by itself, the sibling channel and the socket are untouched"(transport) {
    const socket = await openSocket({ transport });
    const crashing = socket.channel(commentsTopic());
    const sibling = socket.channel(commentsTopic());
    await joinOk(crashing);
    await joinOk(sibling);
    let errors = 0;
    crashing.onError(() => (errors += 1));
    const siblingErrors = [];
    sibling.onError((e) => siblingErrors.push(e));
    let closes = 0;
    socket.onClose(() => (closes += 1));
    const firstJoinRef = crashing.joinRef();

    crashing.push("crash", {}, 5000);
    await waitUntil(() => errors >= 1, 3000, "onError on the crashed channel");
    await waitUntil(() => crashing.state === "joined" && crashing.joinRef() !== firstJoinRef, 3000, "automatic rejoin");
    assert.deepEqual(await push(crashing, "ping", { after: "rejoin" }), { status: "ok", response: { after: "rejoin" } });
    assert.deepEqual(await push(sibling, "ping", { sibling: true }), { status: "ok", response: { sibling: true } });
    assert.deepEqual(siblingErrors, [], "the sibling channel never errored");
    assert.equal(closes, 0, "the socket never closed");
  },

  async "leave: ok, no more broadcasts of that topic reach the socket, joining again works"(transport) {
    const topic = commentsTopic();
    const socket = await openSocket({ transport });
    const seen = [];
    socket.onMessage((m) => {
      if (m.topic === topic && m.event === `${topic}:new`) seen.push(m.payload);
    });
    const ch = socket.channel(topic);
    await joinOk(ch);
    let closed = 0;
    ch.onClose(() => (closed += 1));
    assert.deepEqual(await settleLeave(ch), { status: "ok", response: {} });
    await waitUntil(() => closed === 1 && ch.state === "closed", 3000, "the channel to close after leave");

    // a comment from elsewhere does not reach the socket that left
    const other = await openSocket({ transport });
    const och = other.channel(topic);
    await joinOk(och);
    const got = nextEvent(och, `${topic}:new`);
    assert.deepEqual(await push(och, "comment:add", { content: "after leave" }), { status: "ok", response: {} });
    await got;
    await sleep(300);
    assert.deepEqual(seen, [], "no broadcast after leave");

    // joining again is a fresh join that reads the comment
    const again = socket.channel(topic);
    assert.deepEqual(await joinOk(again), { hey: "there", comments: [{ content: "after leave" }] });
  },

  async "presence: phoenix.js Presence lists both users, shout reaches the room, a leave is seen"(transport) {
    const room = `room:${uid()}`;
    const [a, b] = await Promise.all([openSocket({ transport }), openSocket({ transport })]);
    const ada = await joinRoom(a, room, "ada");
    const leaves = [];
    ada.presence.onLeave((name, current) => leaves.push({ name, left: current.metas.length === 0 }));
    const bob = await joinRoom(b, room, "bob");
    const both = [
      { name: "ada", metas: 1, onlineAt: "string" },
      { name: "bob", metas: 1, onlineAt: "string" },
    ];
    await waitUntil(() => present(ada.presence).length === 2, 3000, "ada to see two people");
    await waitUntil(() => present(bob.presence).length === 2, 3000, "bob to see two people");
    assert.deepEqual(present(ada.presence), both);
    assert.deepEqual(present(bob.presence), both);

    const heard = nextEvent(bob.channel, "shout");
    assert.deepEqual(await push(ada.channel, "shout", { body: "hi" }), { status: "ok", response: {} });
    assert.deepEqual(await heard, { from: "ada", body: "hi" });

    assert.equal((await settleLeave(bob.channel)).status, "ok");
    await waitUntil(() => present(ada.presence).length === 1, 3000, "bob's leave to reach ada");
    assert.deepEqual(present(ada.presence), [{ name: "ada", metas: 1, onlineAt: "string" }]);
    assert.deepEqual(leaves, [{ name: "bob", left: true }]);

    assert.deepEqual(await join(a.channel(`room:${uid()}`, {})), { status: "error", response: { reason: "name required" } });
  },

  async "disconnect by socket id: phoenix.js reconnects by itself and the channel rejoins"(transport) {
    const user = `u-${uid()}`;
    const socket = makeSocket({ transport, params: { user_id: user } });
    let opens = 0;
    let closes = 0;
    socket.onOpen(() => (opens += 1));
    socket.onClose(() => (closes += 1));
    socket.connect();
    await waitUntil(() => opens === 1, 5000, "socket open");
    const ch = socket.channel(commentsTopic());
    await joinOk(ch);
    const firstJoinRef = ch.joinRef();

    assert.equal(await postDisconnect(`users_socket:${user}`), 204);
    await waitUntil(() => closes >= 1, 5000, "the socket to be closed");
    await waitUntil(() => opens >= 2, 5000, "phoenix.js to reconnect");
    await waitUntil(() => ch.state === "joined" && ch.joinRef() !== firstJoinRef, 5000, "the channel to rejoin");
    assert.deepEqual(await push(ch, "ping", { back: true }), { status: "ok", response: { back: true } });
  },

  async "connect refused: token=invalid never opens, phoenix.js reports an error"(transport) {
    const socket = makeSocket({ transport, params: { token: "invalid" }, reconnectAfterMs: () => 10_000 });
    let opened = false;
    socket.onOpen(() => (opened = true));
    const errored = withTimeout(new Promise((resolve) => socket.onError(resolve)), 3000, "onError of a refused connect");
    socket.connect();
    await errored;
    await sleep(200);
    assert.equal(opened, false, "a refused socket never opens");
  },
};

/** Resolves `{status, response}` of channel.leave(). */
function settleLeave(channel) {
  return new Promise((resolve) => {
    channel
      .leave(5000)
      .receive("ok", (response) => resolve({ status: "ok", response }))
      .receive("error", (response) => resolve({ status: "error", response }))
      .receive("timeout", () => resolve({ status: "timeout" }));
  });
}

/** Registers every case as a test named "<label>: <case>" run over `transport`. */
export function defineCases(label, transport) {
  afterEach(cleanupAll);
  for (const [name, fn] of Object.entries(cases)) {
    test(`${label}: ${name}`, T, () => fn(transport));
  }
}
