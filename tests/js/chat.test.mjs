// The Channel API through phoenix.js, against the `chat` example (started
// here on a free port): signed-token connect, intercept/handle_out,
// asynchronous replies, handle_info timers, Presence updates, kicking a user.
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { Socket, Presence } from "phoenix";
import WebSocket from "ws";
import { settle, startExample, withTimeout } from "./lib/helpers.mjs";

const T = { timeout: 10_000 };

let server;
let base; // http://127.0.0.1:PORT
const sockets = new Set();

before(async () => {
  const started = await startExample("chat", "CHAT_BIN");
  server = started.proc;
  base = `http://127.0.0.1:${started.port}`;
});

after(() => server && server.kill());

afterEach(() => {
  for (const s of sockets) s.disconnect();
  sockets.clear();
});

async function token(user) {
  const res = await fetch(`${base}/api/token?user=${encodeURIComponent(user)}`, { method: "POST" });
  assert.equal(res.status, 200);
  return res.text();
}

async function connect(user, opts = {}) {
  const socket = new Socket(`${base.replace("http", "ws")}/socket`, {
    transport: WebSocket,
    params: { token: await token(user) },
    reconnectAfterMs: () => 100,
    rejoinAfterMs: () => 100,
    ...opts,
  });
  sockets.add(socket);
  await withTimeout(
    new Promise((resolve, reject) => {
      socket.onOpen(resolve);
      socket.onError(() => reject(new Error("socket error")));
      socket.connect();
    }),
    5000,
    `${user} connected`,
  );
  return socket;
}

async function join(socket, topic) {
  const channel = socket.channel(topic);
  const r = await settle(channel.join(5000));
  assert.equal(r.status, "ok", JSON.stringify(r));
  return { channel, reply: r.response };
}

function collect(channel, event) {
  const seen = [];
  channel.on(event, (p) => seen.push(p));
  return seen;
}

async function until(cond, ms, what) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms}ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const room = () => `chat:${Date.now()}${Math.floor(Math.random() * 1e6)}`;

function upgradeStatus(query) {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${base.replace("http", "ws")}/socket/websocket?${query}&vsn=2.0.0`);
    ws.on("open", () => {
      ws.close();
      resolve(101);
    });
    ws.on("unexpected-response", (_req, res) => resolve(res.statusCode));
    ws.on("error", () => {});
  });
}

test("connect needs a valid signed token", T, async () => {
  assert.equal(await upgradeStatus(""), 403);
  assert.equal(await upgradeStatus("token=forged.token"), 403);
  const good = await token("ada");
  const [body, mac] = good.split(".");
  assert.equal(await upgradeStatus(`token=${encodeURIComponent(body + "x." + mac)}`), 403, "tampered");
  assert.equal(await upgradeStatus(`token=${encodeURIComponent(good)}`), 101);
  const socket = await connect("ada");
  const { reply } = await join(socket, room());
  assert.deepEqual(reply, { you: "ada" });
});

test("intercepted messages are rewritten per subscriber and muted senders filtered", T, async () => {
  const topic = room();
  const [ada, bob] = await Promise.all([connect("ada"), connect("bob")]);
  const { channel: a } = await join(ada, topic);
  const { channel: b } = await join(bob, topic);
  const toAda = collect(a, "message");
  const toBob = collect(b, "message");

  assert.equal((await settle(a.push("say", { text: "hi" }))).status, "ok");
  await until(() => toAda.length === 1 && toBob.length === 1, 3000, "both to get the message");
  assert.deepEqual(toAda[0], { from: "ada", text: "hi", mine: true });
  assert.deepEqual(toBob[0], { from: "ada", text: "hi", mine: false });

  assert.deepEqual(await settle(b.push("mute", { name: "ada" })), { status: "ok", response: { muted: 1 } });
  assert.equal((await settle(a.push("say", { text: "again" }))).status, "ok");
  assert.equal((await settle(b.push("say", { text: "bob here" }))).status, "ok");
  await until(() => toAda.length === 3, 3000, "ada to get both messages");
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(
    toBob.map((m) => m.text),
    ["hi", "bob here"],
    "bob muted ada, so only his own message reached him",
  );
  // The app's state counted the three messages said in this room, and its
  // own HTTP route reads that same state.
  const rooms = await (await fetch(`${base}/api/rooms`)).json();
  assert.equal(rooms[topic.slice("chat:".length)], 3, JSON.stringify(rooms));
});

test("an asynchronous reply arrives after later pushes are answered", T, async () => {
  const socket = await connect("ada");
  const { channel } = await join(socket, room());
  const order = [];
  const slow = settle(channel.push("translate", { text: "hello" })).then((r) => {
    order.push("translate");
    return r;
  });
  const fast = settle(channel.push("mute", { name: "nobody" })).then((r) => {
    order.push("mute");
    return r;
  });
  assert.deepEqual(await slow, { status: "ok", response: { text: "HELLO" } });
  await fast;
  assert.deepEqual(order, ["mute", "translate"]);
});

test("timers deliver to handle_info, which pushes", T, async () => {
  const socket = await connect("ada");
  const { channel } = await join(socket, room());
  const reminders = collect(channel, "reminder");
  const started = Date.now();
  assert.equal((await settle(channel.push("remind", { text: "stand up", after_ms: 150 }))).status, "ok");
  await until(() => reminders.length === 1, 3000, "the reminder");
  assert.ok(Date.now() - started >= 140, "not before its time");
  assert.deepEqual(reminders[0], { text: "stand up" });
});

test("presence updates reach phoenix.js Presence with phx_ref_prev", T, async () => {
  const topic = room();
  const [ada, bob] = await Promise.all([connect("ada"), connect("bob")]);
  const { channel: a } = await join(ada, topic);
  const b = bob.channel(topic);
  const presence = new Presence(b);
  const diffs = collect(b, "presence_diff");
  assert.equal((await settle(b.join(5000))).status, "ok");
  const status = (name) => {
    const entry = presence.list((key, p) => [key, p]).find(([key]) => key === name);
    return entry && entry[1].metas.map((m) => m.status);
  };
  await until(() => status("ada") && status("bob"), 3000, "both present");
  assert.deepEqual(status("ada"), ["here"]);

  assert.equal((await settle(a.push("status", { status: "away" }))).status, "ok");
  await until(() => status("ada") && status("ada")[0] === "away", 3000, "ada away");
  const update = diffs.find((d) => d.joins.ada && d.leaves.ada);
  assert.ok(update, `one diff with ada joining and leaving: ${JSON.stringify(diffs)}`);
  // Diffs are batched per broadcast period: ada's first join may share the
  // diff of her update. The new meta names the old one, which leaves.
  const updated = update.joins.ada.metas.find((m) => m.phx_ref_prev);
  assert.ok(updated, `a meta with phx_ref_prev: ${JSON.stringify(update)}`);
  assert.deepEqual(update.leaves.ada.metas.map((m) => m.phx_ref), [updated.phx_ref_prev]);

  a.leave();
  await until(() => !status("ada"), 3000, "ada to leave");
});

test("kicking a member closes all their connections; phoenix.js reconnects", T, async () => {
  const ada1 = await connect("ada");
  const ada2 = await connect("ada");
  const bob = await connect("bob");
  let reopened = 0;
  ada1.onOpen(() => (reopened += 1));
  const closes = [];
  ada1.onClose((e) => closes.push(e.code));
  let bobClosed = false;
  bob.onClose(() => (bobClosed = true));

  const res = await fetch(`${base}/api/kick?user=ada`, { method: "POST" });
  assert.equal(res.status, 204);
  await until(() => closes.length >= 1, 3000, "ada's socket to close");
  assert.equal(closes[0], 1001);
  await until(() => reopened >= 1, 3000, "phoenix.js to reconnect");
  assert.equal(bobClosed, false);
  assert.ok(ada2);
});
