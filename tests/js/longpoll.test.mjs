// phoenix.js over LongPoll (/socket/longpoll): the same cases as over
// WebSocket (lib/cases.mjs), then phoenix.js's fallback from a WebSocket that
// cannot open to LongPoll (`longPollFallbackMs`).
//
// Under Node, phoenix.js's LongPoll talks HTTP with the global fetch (its Ajax
// module picks fetch when there is no XMLHttpRequest), so no polyfill is needed.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { defineCases } from "./lib/cases.mjs";
import { T, URL, LongPoll, WebSocket, makeSocket, commentsTopic, joinOk, push, nextEvent, waitUntil, withTimeout, uid } from "./lib/helpers.mjs";

defineCases("LongPoll", "longpoll");

/** A TCP port on 127.0.0.1 that nothing listens on (bound, then released). */
async function closedPort() {
  const srv = net.createServer();
  await new Promise((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/**
 * A TCP server that accepts connections and never answers, like a proxy that
 * swallows WebSocket upgrades: a WebSocket to it neither opens nor errors.
 */
async function blackhole() {
  const sockets = new Set();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on("error", () => {});
    s.on("close", () => sockets.delete(s));
  });
  await new Promise((resolve) => srv.listen(0, "127.0.0.1", resolve));
  return {
    port: srv.address().port,
    close() {
      for (const s of sockets) s.destroy();
      srv.close();
    },
  };
}

/** A `ws` WebSocket class that connects to 127.0.0.1:`port` instead of the server. */
function webSocketTo(port) {
  return class RedirectedWebSocket extends WebSocket {
    constructor(url, protocols) {
      super(url.replace(/^ws:\/\/[^/]+/, `ws://127.0.0.1:${port}`), protocols);
    }
  };
}

/**
 * Connects with `transport` and longPollFallbackMs 300, joining a channel
 * before the socket is open (phoenix.js buffers the join); asserts that the
 * socket ends up open over LongPoll and the channel joins, pushes and gets a
 * broadcast from a second LongPoll socket.
 */
async function assertFallsBack(transport) {
  const socket = makeSocket({ transport, longPollFallbackMs: 300 });
  const logs = [];
  socket.logger = (kind, msg) => logs.push(`${kind}: ${msg}`);
  let opens = 0;
  socket.onOpen(() => (opens += 1));
  const started = Date.now();
  socket.connect();
  const topic = commentsTopic();
  const ch = socket.channel(topic);
  const joined = joinOk(ch, 8000);

  await waitUntil(() => opens >= 1, 5000, "the socket to open (after falling back to LongPoll)");
  const openedAfter = Date.now() - started;
  assert.equal(socket.transport, LongPoll, `the socket uses LongPoll; log:\n${logs.join("\n")}`);
  assert.ok(logs.some((l) => l.includes("falling back to LongPoll")), `phoenix.js logged the fallback:\n${logs.join("\n")}`);
  assert.deepEqual(await joined, { hey: "there", comments: [] });

  assert.deepEqual(await push(ch, "ping", { over: "longpoll" }), { status: "ok", response: { over: "longpoll" } });
  const other = makeSocket({ transport: "longpoll" });
  other.connect();
  const och = other.channel(topic);
  await joinOk(och);
  const got = nextEvent(ch, `${topic}:new`, 5000);
  const content = `via fallback ${uid()}`;
  assert.deepEqual(await push(och, "comment:add", { content }), { status: "ok", response: {} });
  assert.deepEqual(await got, { comment: { content } });
  return openedAfter;
}

test("fallback: a WebSocket whose connection is refused falls back to LongPoll at once", T, async () => {
  const openedAfter = await assertFallsBack(webSocketTo(await closedPort()));
  // the error triggers the fallback without waiting for longPollFallbackMs' timer
  assert.ok(openedAfter < 3000, `opened after ${openedAfter}ms`);
});

test("fallback: a WebSocket that never opens falls back to LongPoll after longPollFallbackMs", T, async () => {
  const hole = await blackhole();
  try {
    const openedAfter = await assertFallsBack(webSocketTo(hole.port));
    assert.ok(openedAfter >= 300, `opened after ${openedAfter}ms, before longPollFallbackMs (300)`);
  } finally {
    hole.close();
  }
});

test("LongPoll: a refused connect (token=invalid) is a 403 answer, the socket never opens", T, async () => {
  const res = await withTimeout(
    fetch(`${URL.replace(/^ws/, "http")}/longpoll?token=invalid&vsn=2.0.0`),
    3000,
    "GET /socket/longpoll?token=invalid",
  );
  assert.equal(res.status, 200, "LongPoll answers HTTP 200, the status is in the body");
  assert.deepEqual(await res.json(), { status: 403 });
});

