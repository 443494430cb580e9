// Several `discuss` nodes on one Redis, driven by phoenix.js. This file
// starts its own redis-server and nodes on free ports (it fails loudly when
// redis-server or the release example is missing; ./test.sh installs and
// builds both).
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { Socket, Presence } from "phoenix";
import WebSocket from "ws";
import { ADMIN_TOKEN, freePort, settle, sleep } from "./lib/helpers.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = process.env.DISCUSS_BIN || path.join(ROOT, "target/release/examples/discuss");
const DOWN_PERIOD_MS = 2000;
const T = { timeout: 20_000 };

let redis;
let redisPort;
const nodes = []; // {proc, port, url}
const sockets = new Set();

async function until(cond, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms}ms waiting for ${what}`);
    await sleep(25);
  }
}

function waitForLine(proc, needle, ms, what) {
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}: ${out}`)), ms);
    const onData = (d) => {
      out += d;
      if (out.includes(needle)) {
        clearTimeout(timer);
        resolve();
      }
    };
    proc.stdout.on("data", onData);
    proc.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with ${code}: ${out}`));
    });
  });
}

async function startRedis(port) {
  const proc = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await waitForLine(proc, "Ready to accept connections", 10_000, "redis-server");
  return proc;
}

const stopRedis = () => stop(redis);

async function startNode() {
  const port = await freePort();
  const proc = spawn(BIN, ["--port", String(port)], {
    stdio: ["ignore", "pipe", "inherit"],
    env: {
      ...process.env,
      REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      PRESENCE_DOWN_PERIOD_MS: String(DOWN_PERIOD_MS),
      DISCUSS_ADMIN_TOKEN: ADMIN_TOKEN,
      RUST_LOG: "warn",
      NO_COLOR: "1",
    },
  });
  await waitForLine(proc, `listening on http://127.0.0.1:${port}`, 15_000, `discuss node on ${port}`);
  const node = { proc, port, url: `ws://127.0.0.1:${port}/socket`, http: `http://127.0.0.1:${port}` };
  nodes.push(node);
  return node;
}

before(async () => {
  try {
    execFileSync("redis-server", ["--version"], { stdio: "ignore" });
  } catch {
    throw new Error("redis-server is missing: install Debian's redis-server (./test.sh does)");
  }
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`cargo build --release --examples\``);
  redisPort = await freePort();
  redis = await startRedis(redisPort);
  await Promise.all([startNode(), startNode(), startNode()]);
});

function stop(proc) {
  return new Promise((resolve) => {
    proc.stdout.destroy();
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    proc.once("exit", resolve);
    proc.kill("SIGKILL");
  });
}

after(async () => {
  for (const s of sockets) s.disconnect();
  await Promise.all(nodes.map((n) => stop(n.proc)));
  if (redis) await stop(redis);
});

afterEach(() => {
  for (const s of sockets) s.disconnect();
  sockets.clear();
});

async function connect(node, params = {}) {
  const socket = new Socket(node.url, {
    transport: WebSocket,
    params,
    reconnectAfterMs: () => 100,
    rejoinAfterMs: () => 100,
  });
  sockets.add(socket);
  await until(
    () =>
      new Promise((resolve) => {
        if (socket.isConnected()) return resolve(true);
        socket.onOpen(() => resolve(true));
        if (!socket.conn) socket.connect();
        setTimeout(() => resolve(false), 200);
      }),
    5000,
    `socket on node ${node.port}`,
  );
  return socket;
}

async function joinOk(channel) {
  const r = await settle(channel.join(5000));
  assert.equal(r.status, "ok", JSON.stringify(r));
  return r.response;
}

const uid = () => `${Date.now()}${Math.floor(Math.random() * 1e6)}`;

/** Broadcasts cross once every node's Redis subscription is up. */
async function nodesConnected(a, b) {
  const topic = `comments:${uid()}`;
  const sa = await connect(a);
  const sb = await connect(b);
  const ca = sa.channel(topic);
  const cb = sb.channel(topic);
  await joinOk(ca);
  await joinOk(cb);
  let seen = 0;
  cb.on(`${topic}:new`, () => (seen += 1));
  await until(
    async () => {
      await settle(ca.push("comment:add", { content: "probe" }));
      await sleep(100);
      return seen > 0;
    },
    10_000,
    `node ${a.port} reaching node ${b.port}`,
  );
  sa.disconnect();
  sb.disconnect();
}

test("comments added on one node reach clients on every node, once", T, async () => {
  const [a, b, c] = nodes;
  await nodesConnected(a, b);
  await nodesConnected(a, c);
  const topic = `comments:${uid()}`;
  const channels = [];
  const seen = [];
  for (const node of [a, b, c]) {
    const socket = await connect(node);
    const ch = socket.channel(topic);
    await joinOk(ch);
    const got = [];
    ch.on(`${topic}:new`, (p) => got.push(p));
    channels.push(ch);
    seen.push(got);
  }
  assert.equal((await settle(channels[1].push("comment:add", { content: "from b" }))).status, "ok");
  await until(() => seen.every((g) => g.length >= 1), 5000, "the comment on every node");
  await sleep(300);
  for (const got of seen) assert.deepEqual(got, [{ comment: { content: "from b" } }]);
});

test("presences on different nodes see each other through phoenix.js Presence", T, async () => {
  const [a, b] = nodes;
  await nodesConnected(a, b);
  const room = `room:multi${uid()}`;
  const join = async (node, name) => {
    const socket = await connect(node);
    const channel = socket.channel(room, { name });
    const presence = new Presence(channel);
    await joinOk(channel);
    return { socket, channel, presence, names: () => presence.list((k) => k).sort() };
  };
  const ada = await join(a, "ada");
  const bob = await join(b, "bob");
  await until(() => ada.names().join() === "ada,bob" && bob.names().join() === "ada,bob", 8000, "both to see both");
  bob.channel.leave();
  await until(() => ada.names().join() === "ada", 8000, "bob's leave on node a");
});

test("disconnect through one node closes that user's sockets on every node", T, async () => {
  const [a, b] = nodes;
  await nodesConnected(a, b);
  const user = `u${uid()}`;
  const onA = await connect(a, { user_id: user });
  const codes = [];
  onA.onClose((e) => codes.push(e.code));
  const res = await fetch(`${b.http}/api/disconnect?id=users_socket:${user}`, {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
  });
  assert.equal(res.status, 204);
  await until(() => codes.length > 0, 5000, "the socket on node a to close");
  assert.equal(codes[0], 1001);
});

test("broadcasts sent after Redis comes back are all delivered", T, async () => {
  const [a, b] = nodes;
  await nodesConnected(a, b);
  await stopRedis();
  await sleep(500);
  redis = await startRedis(redisPort);
  await nodesConnected(a, b);
  const topic = `comments:${uid()}`;
  const sa = await connect(a);
  const sb = await connect(b);
  const ca = sa.channel(topic);
  const cb = sb.channel(topic);
  await joinOk(ca);
  await joinOk(cb);
  const got = [];
  cb.on(`${topic}:new`, (p) => got.push(p.comment.content));
  const sent = [];
  for (let i = 0; i < 30; i++) {
    sent.push(`after restart ${i}`);
    assert.equal((await settle(ca.push("comment:add", { content: sent[i] }))).status, "ok");
  }
  await until(() => got.length >= sent.length, 5000, "every broadcast on node b");
  assert.deepEqual(got, sent);
});

test("a node that dies takes its presences with it, everywhere, within the down period", T, async () => {
  const victim = await startNode();
  const [a] = nodes;
  await nodesConnected(victim, a);
  const room = `room:doomed${uid()}`;
  const onVictim = await connect(victim);
  const ghost = onVictim.channel(room, { name: "ghost" });
  await joinOk(ghost);
  const watcher = await connect(a);
  const channel = watcher.channel(room, { name: "watcher" });
  const presence = new Presence(channel);
  await joinOk(channel);
  const names = () => presence.list((k) => k).sort().join();
  await until(() => names() === "ghost,watcher", 8000, "the watcher to see the ghost");
  victim.proc.kill("SIGKILL");
  const killed = Date.now();
  await until(() => names() === "watcher", DOWN_PERIOD_MS + 4000, "the ghost to leave after its node died");
  const took = Date.now() - killed;
  assert.ok(took >= DOWN_PERIOD_MS / 2, `left after ${took} ms: only the down period should end it`);
});
