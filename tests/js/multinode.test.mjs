// Several `discuss` nodes sharing broadcasts and presence through a broker,
// driven by phoenix.js, once per engine (lib/brokers.mjs): standalone Redis
// ("redis"), a 3-master Redis Cluster ("cluster") and NATS ("nats").
// MULTINODE_ENGINES=redis,nats picks some (default: all three). Every engine
// runs every test below.
//
// This file starts its own brokers and nodes on free loopback ports and
// kills them afterwards, whatever happened; it fails loudly when a broker's
// binary or the release example is missing (./test.sh installs and builds
// them). Their output goes to tests/js/artifacts/multinode/.
//
// The nodes keep the default presence timings (PresenceOptions::default():
// a heartbeat every 500 ms, a silent node down after 3 s).
import { describe, test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { Socket, Presence } from "phoenix";
import WebSocket from "ws";
import { ADMIN_TOKEN, freePort, settle, sleep } from "./lib/helpers.mjs";
import { LOG_DIR, selectedEngines, startBroker, spawnReady, kill, killAll } from "./lib/brokers.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = process.env.DISCUSS_BIN || path.join(ROOT, "target/release/examples/discuss");
/** PresenceOptions::default(): the nodes here do not change them. */
const DOWN_PERIOD_MS = 3000;
const HEARTBEAT_MS = 500;
const T = { timeout: 20_000 };
const ENGINES = selectedEngines();

/** The environment of a node: ours minus any broker or presence setting of the caller's shell. */
const BASE_ENV = { ...process.env };
for (const k of ["REDIS_URL", "REDIS_CLUSTER_URLS", "NATS_URL", "PRESENCE_DOWN_PERIOD_MS", "NODE_NAME", "DATABASE_URL"]) delete BASE_ENV[k];

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

function disconnectAll() {
  for (const s of sockets) s.disconnect();
  sockets.clear();
}

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

/** A node's broker counters (GET /api/stats with the admin token). */
async function stats(node) {
  const res = await fetch(`${node.http}/api/stats`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  assert.equal(res.status, 200, `GET /api/stats on node ${node.port}`);
  return (await res.json()).broker;
}

/**
 * Resolves once a comment "probe" made on node `a` reaches a client on node
 * `b`, on `topic` (default: a fresh one). On a cluster a topic lives on the
 * master owning its slot, so a test that needs a topic to cross probes that
 * topic; its clients then ignore the probes (late ones included).
 */
async function nodesConnected(a, b, topic = `comments:${uid()}`) {
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
  sockets.delete(sa);
  sockets.delete(sb);
}

/** Joins `room` on `node` as `name`; `names()` is what its phoenix.js Presence lists. */
async function presenceIn(node, room, name) {
  const socket = await connect(node);
  const channel = socket.channel(room, { name });
  const presence = new Presence(channel);
  await joinOk(channel);
  return { socket, channel, presence, names: () => presence.list((k) => k).sort().join() };
}

before(() => {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`cargo build --release --examples\``);
});

// Whatever a failed before/after left running.
after(() => killAll());

for (const engine of ENGINES) {
  describe(engine, () => {
    let broker;
    const nodes = []; // every node started, {proc, port, url, http, name}

    async function startNode(env = {}) {
      const port = await freePort();
      const proc = await spawnReady(BIN, ["--port", String(port)], {
        env: {
          ...BASE_ENV,
          ...broker.env,
          // A SQLite file per node, fresh each run (the tests here are about
          // the broker; tests/discuss_db.rs runs nodes on one PostgreSQL).
          DATABASE_URL: `sqlite://${path.join(LOG_DIR, `${engine}-node-${port}.db`)}`,
          ...env,
          DISCUSS_ADMIN_TOKEN: ADMIN_TOKEN,
          NO_COLOR: "1",
        },
        ready: `listening on http://127.0.0.1:${port}`,
        ms: 15_000,
        what: `discuss node on ${port} (${engine})`,
        log: `${engine}-node-${env.NODE_NAME ? `${env.NODE_NAME}-` : ""}${port}`,
      });
      const node = { proc, port, url: `ws://127.0.0.1:${port}/socket`, http: `http://127.0.0.1:${port}` };
      nodes.push(node);
      return node;
    }

    before(async () => {
      broker = await startBroker(engine);
      await Promise.all([startNode(), startNode(), startNode()]);
    });

    after(async () => {
      disconnectAll();
      await Promise.all(nodes.map((n) => kill(n.proc)));
      if (broker) await broker.stop();
    });

    afterEach(disconnectAll);

    test("comments added on one node reach clients on every node, once", T, async () => {
      const [a, b, c] = nodes;
      const topic = `comments:${uid()}`;
      await nodesConnected(b, a, topic);
      await nodesConnected(b, c, topic);
      const channels = [];
      const seen = [];
      for (const node of [a, b, c]) {
        const socket = await connect(node);
        const ch = socket.channel(topic);
        await joinOk(ch);
        const got = [];
        ch.on(`${topic}:new`, (p) => p.comment.content !== "probe" && got.push(p));
        channels.push(ch);
        seen.push(got);
      }
      assert.equal((await settle(channels[1].push("comment:add", { content: "from b" }))).status, "ok");
      await until(() => seen.every((g) => g.length >= 1), 5000, "the comment on every node");
      await sleep(300); // a window for duplicates to show up
      for (const got of seen) assert.deepEqual(got, [{ comment: { content: "from b" } }]);
    });

    test("presences on different nodes see each other through phoenix.js Presence", T, async () => {
      const [a, b] = nodes;
      await nodesConnected(a, b);
      const room = `room:multi${uid()}`;
      const ada = await presenceIn(a, room, "ada");
      const bob = await presenceIn(b, room, "bob");
      await until(() => ada.names() === "ada,bob" && bob.names() === "ada,bob", 8000, "both to see both");
      bob.channel.leave();
      await until(() => ada.names() === "ada", 8000, "bob's leave on node a");
    });

    test("disconnect through one node closes that user's sockets on every node", T, async () => {
      const [a, b] = nodes;
      await nodesConnected(b, a);
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

    test("broadcasts sent after the broker comes back are all delivered, in order", T, async (t) => {
      const [a, b] = nodes;
      await nodesConnected(a, b);
      const earlier = await Promise.all([a, b].map(stats));
      const started = Date.now();
      await broker.restart();
      const restarted = Date.now();
      // Each node's subscriber noticed the outage and came back.
      await until(
        async () => (await Promise.all([a, b].map(stats))).every((s, i) => s.reconnects > earlier[i].reconnects),
        15_000,
        "both nodes to count a reconnect in /api/stats",
      );
      const topic = `comments:${uid()}`;
      const sa = await connect(a);
      const sb = await connect(b);
      const ca = sa.channel(topic);
      const cb = sb.channel(topic);
      await joinOk(ca);
      await joinOk(cb);
      const got = [];
      cb.on(`${topic}:new`, (p) => p.comment.content !== "probe" && got.push(p.comment.content));
      await nodesConnected(a, b, topic);
      t.diagnostic(`${engine}: broker restarted in ${restarted - started} ms; nodes connected again ${Date.now() - restarted} ms later`);
      const sent = [];
      for (let i = 0; i < 30; i++) {
        sent.push(`after restart ${i}`);
        assert.equal((await settle(ca.push("comment:add", { content: sent[i] }))).status, "ok");
      }
      await until(() => got.length >= sent.length, 5000, "every broadcast on node b");
      assert.deepEqual(got, sent);
    });

    test("a node that dies takes its presences with it, everywhere, within the default down period", T, async (t) => {
      const [a] = nodes;
      const victim = await startNode();
      await nodesConnected(victim, a);
      const room = `room:doomed${uid()}`;
      await presenceIn(victim, room, "ghost");
      const watcher = await presenceIn(a, room, "watcher");
      await until(() => watcher.names() === "ghost,watcher", 8000, "the watcher to see the ghost");
      const killed = Date.now();
      await kill(victim.proc);
      await until(() => watcher.names() === "watcher", 8000, "the ghost to leave after its node died");
      const took = Date.now() - killed;
      t.diagnostic(`${engine}: the dead node's presence left the other node after ${took} ms`);
      assert.ok(took < 5000, `left after ${took} ms: the default down period is ${DOWN_PERIOD_MS} ms`);
      assert.ok(took >= DOWN_PERIOD_MS / 2, `left after ${took} ms: only the down period should end it`);
    });

    test("a node restarted under the same NODE_NAME ends its previous life's presences at once", T, async (t) => {
      const [a] = nodes;
      const name = `phoenix-${engine}-${uid()}`;
      const first = await startNode({ NODE_NAME: name });
      await nodesConnected(first, a);
      const room = `room:reborn${uid()}`;
      await presenceIn(first, room, "ghost");
      const watcher = await presenceIn(a, room, "watcher");
      await until(() => watcher.names() === "ghost,watcher", 8000, "the watcher to see the ghost");
      const killed = Date.now();
      await kill(first.proc);
      const second = await startNode({ NODE_NAME: name }); // a fresh port
      await until(() => watcher.names() === "watcher", DOWN_PERIOD_MS, "the old life's ghost to leave");
      const took = Date.now() - killed;
      t.diagnostic(`${engine}: restarted under its name, the node's old presence left after ${took} ms`);
      // The down period could end it no sooner than DOWN_PERIOD_MS - HEARTBEAT_MS
      // after the kill (the last heartbeat came at most one interval before).
      assert.ok(took < DOWN_PERIOD_MS - HEARTBEAT_MS, `left after ${took} ms: the name, not the timeout, should end it`);
      // The second life is a node like any other.
      await presenceIn(second, room, "reborn");
      await until(() => watcher.names() === "reborn,watcher", 8000, "the watcher to see the second life's presence");
    });
  });
}
