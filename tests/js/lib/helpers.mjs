// Helpers for the project's end-to-end tests of the `discuss` example.
//
// Two kinds of client:
//   * phoenix.js (the official client, pinned 1.8.16) over the `ws` package
//     or over its own LongPoll transport (Node's global fetch; phoenix.js's
//     Ajax uses it when there is no XMLHttpRequest), for "does a real app
//     work" checks (auto-rejoin, auto-reconnect, ...);
//   * RawClient, a bare WebSocket speaking V2 (array) or V1 (object) JSON
//     frames, where the exact frames and their order matter.
//
// Every wait has an explicit deadline so a dead or misbehaving server fails
// fast with a message naming what was awaited.
import { Socket, LongPoll, Presence } from "phoenix";
import WebSocket from "ws";
import { createServer } from "node:net";

export { Socket, LongPoll, Presence, WebSocket };

/**
 * The phoenix.js transport class for a name: "websocket" (the `ws` package)
 * or "longpoll" (phoenix.js's LongPoll). A class is returned unchanged.
 */
export function transportOf(t) {
  if (typeof t === "function") return t;
  switch (String(t).toLowerCase()) {
    case "websocket":
      return WebSocket;
    case "longpoll":
      return LongPoll;
    default:
      throw new Error(`unknown phoenix.js transport ${t}: use "websocket" or "longpoll"`);
  }
}

/**
 * The transport makeSocket/openSocket use when a test does not choose one:
 * PHX_TRANSPORT=longpoll runs those over LongPoll too (an exploration aid:
 * WebSocket-only expectations, such as the close code 1001 of a forced
 * disconnect, do not hold there; lib/cases.mjs holds the shared cases).
 */
export const DEFAULT_TRANSPORT = transportOf(process.env.PHX_TRANSPORT || "websocket");

/** ws://host:port/socket of the server under test. */
export const URL = (process.env.DISCUSS_URL || "ws://127.0.0.1:4000/socket").replace(/\/+$/, "");

/** http://host:port (no path) of the same server, for the HTTP endpoints. */
export const HTTP_BASE = new globalThis.URL(URL.replace(/^ws:/, "http:").replace(/^wss:/, "https:")).origin;

/** The options every test uses: a hard 10 s ceiling. */
export const T = { timeout: 10_000 };

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A TCP port free on 127.0.0.1 right now, for a server a test starts itself. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

let counter = 0;
/** A fresh all-digits id, unique within and across runs. */
export function uid() {
  counter += 1;
  const rnd = Math.floor(Math.random() * 1e6)
    .toString()
    .padStart(6, "0");
  return `${Date.now()}${rnd}${counter}`;
}

/** A fresh `comments:N` topic (N all digits), so tests never see each other's comments. */
export const commentsTopic = () => `comments:${uid()}`;

/** Rejects after `ms` with a message naming what we were waiting for. */
export function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms}ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

/** Polls `cond` until it returns something truthy (returned) or `ms` passed (throws). */
export async function waitUntil(cond, ms, what, step = 20) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms}ms waiting for ${what}`);
    await sleep(step);
  }
}

// ------------------------------------------------------------------ HTTP

/** The token of the example's admin route (scripts/start-discuss.sh sets it). */
export const ADMIN_TOKEN = process.env.DISCUSS_ADMIN_TOKEN || "test-admin-token";

/** POST /api/disconnect?id=ID with `token` (the admin token by default); resolves the HTTP status. */
export async function postDisconnect(id, ms = 3000, token = ADMIN_TOKEN) {
  const headers = token === null ? {} : { authorization: `Bearer ${token}` };
  const res = await withTimeout(
    fetch(`${HTTP_BASE}/api/disconnect?id=${encodeURIComponent(id)}`, { method: "POST", headers }),
    ms,
    `POST /api/disconnect?id=${id}`,
  );
  await res.arrayBuffer().catch(() => {});
  return res.status;
}

/**
 * Attempts a WebSocket upgrade of `URL/websocket?QUERY` (query given as an
 * object; `vsn` omitted when not in it). Resolves `{ opened: true }` or
 * `{ opened: false, status }` with the HTTP status the upgrade was answered with.
 */
export function tryUpgrade(query, ms = 3000) {
  const qs = new URLSearchParams(query).toString();
  const ws = new WebSocket(`${URL}/websocket${qs ? `?${qs}` : ""}`);
  return withTimeout(
    new Promise((resolve, reject) => {
      ws.once("open", () => {
        ws.terminate();
        resolve({ opened: true });
      });
      ws.once("unexpected-response", (_req, res) => {
        res.resume();
        resolve({ opened: false, status: res.statusCode });
        ws.terminate();
      });
      ws.once("error", (e) => reject(e));
    }),
    ms,
    `upgrade answer for ?${qs}`,
  );
}

// ------------------------------------------------------------------ phoenix.js

const liveSockets = new Set();

/**
 * A phoenix.js Socket (not connected) over DEFAULT_TRANSPORT, or
 * `opts.transport` (a class, or "websocket" / "longpoll"), with a 5 s push
 * timeout and fast reconnect/rejoin so recovery is observable within one test.
 */
export function makeSocket(opts = {}) {
  const socket = new Socket(URL, {
    timeout: 5000,
    reconnectAfterMs: () => 100,
    rejoinAfterMs: () => 100,
    ...opts,
    transport: transportOf(opts.transport || DEFAULT_TRANSPORT),
  });
  liveSockets.add(socket);
  return socket;
}

/** Makes and connects a socket; resolves once open, rejects on error or after `ms`. */
export async function openSocket(opts = {}, ms = 5000) {
  const socket = makeSocket(opts);
  await withTimeout(
    new Promise((resolve, reject) => {
      socket.onOpen(() => resolve());
      socket.onError((e) => reject(new Error(`socket error before open: ${e && e.message ? e.message : e}`)));
      socket.connect();
    }),
    ms,
    `phoenix.js socket open at ${URL}`,
  );
  return socket;
}

/** Resolves `{status, response}` of a phoenix.js Push: status "ok", "error" or "timeout". */
export function settle(p) {
  return new Promise((resolve) => {
    p.receive("ok", (response) => resolve({ status: "ok", response }))
      .receive("error", (response) => resolve({ status: "error", response }))
      .receive("timeout", () => resolve({ status: "timeout" }));
  });
}

export const join = (channel, ms = 5000) => settle(channel.join(ms));

export async function joinOk(channel, ms = 5000) {
  const r = await join(channel, ms);
  if (r.status !== "ok") {
    throw new Error(`join ${channel.topic}: expected ok, got ${r.status} ${JSON.stringify(r.response)}`);
  }
  return r.response;
}

export const push = (channel, event, payload, ms = 5000) => settle(channel.push(event, payload, ms));

/** Resolves the payload of the next `event` on `channel`; rejects after `ms`. */
export function nextEvent(channel, event, ms = 3000) {
  let ref;
  const p = new Promise((resolve) => {
    ref = channel.on(event, (payload) => resolve(payload));
  });
  return withTimeout(p, ms, `event "${event}" on ${channel.topic}`).finally(() => channel.off(event, ref));
}

/** Disconnects every phoenix.js socket made by makeSocket/openSocket. */
async function cleanupSockets() {
  const sockets = [...liveSockets];
  liveSockets.clear();
  await Promise.all(
    sockets.map(
      (s) =>
        new Promise((resolve) => {
          const t = setTimeout(resolve, 1000);
          try {
            s.disconnect(() => {
              clearTimeout(t);
              resolve();
            });
          } catch {
            clearTimeout(t);
            resolve();
          }
        }),
    ),
  );
}

// ------------------------------------------------------------------ raw frames

const liveRaw = new Set();

/**
 * A bare WebSocket client. Every frame received is kept in `frames`
 * (`{text, msg, binary, data, at}`: msg = parsed JSON or null; a binary
 * frame has text null and its bytes in data), in arrival order, so tests can
 * assert exact frames and their order.
 */
export class RawClient {
  constructor(ws, vsn) {
    this.ws = ws;
    this.vsn = vsn;
    this.frames = [];
    this.waiters = [];
    this.closed = null;
    this.nextRef = 0;
    ws.on("message", (data, isBinary) => {
      const text = isBinary ? null : data.toString("utf8");
      let msg = null;
      try {
        msg = text === null ? null : JSON.parse(text);
      } catch {
        msg = null;
      }
      this.frames.push({ text, msg, binary: isBinary, data: isBinary ? Buffer.from(data) : undefined, at: Date.now() });
      this._check();
    });
    ws.on("close", (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this._check();
    });
    ws.on("error", () => {});
  }

  /**
   * Opens `URL/websocket?params&vsn=VSN` (`vsn: null` sends no vsn at all).
   * Rejects on a non-101 answer (message names the HTTP status) or after `ms`.
   */
  static connect({ vsn = "2.0.0", params = {}, ms = 5000 } = {}) {
    const q = { ...params };
    if (vsn !== null) q.vsn = vsn;
    const qs = new URLSearchParams(q).toString();
    const ws = new WebSocket(`${URL}/websocket${qs ? `?${qs}` : ""}`);
    const client = new RawClient(ws, vsn === null ? "1.0.0" : vsn);
    liveRaw.add(client);
    return withTimeout(
      new Promise((resolve, reject) => {
        ws.once("open", () => resolve(client));
        ws.once("unexpected-response", (_req, res) => reject(new Error(`upgrade answered HTTP ${res.statusCode}`)));
        ws.once("error", (e) => reject(e));
      }),
      ms,
      "raw websocket open",
    );
  }

  /** A fresh ref string. */
  ref() {
    this.nextRef += 1;
    return `r${this.nextRef}`;
  }

  send(frame) {
    this.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  _check() {
    this.waiters = this.waiters.filter((w) => !w());
  }

  /** Index of the first frame at index >= from matching pred, or -1. */
  indexOf(pred, from = 0) {
    for (let i = from; i < this.frames.length; i++) {
      if (this.frames[i].msg !== null && pred(this.frames[i].msg)) return i;
    }
    return -1;
  }

  /** Parsed messages matching pred, in arrival order. */
  msgs(pred = () => true) {
    return this.frames.filter((f) => f.msg !== null && pred(f.msg)).map((f) => f.msg);
  }

  /** Waits for the first frame (index >= from) matching pred; resolves its parsed message. */
  waitMsg(pred, ms = 3000, what = "frame", from = 0) {
    return withTimeout(
      new Promise((resolve, reject) => {
        const w = () => {
          const i = this.indexOf(pred, from);
          if (i >= 0) {
            resolve(this.frames[i].msg);
            return true;
          }
          if (this.closed) {
            reject(new Error(`connection closed (code ${this.closed.code}) while waiting for ${what}`));
            return true;
          }
          return false;
        };
        if (!w()) this.waiters.push(w);
      }),
      ms,
      what,
    );
  }

  /** Waits for the reply (V2 array or V1 object) whose ref is `ref`. */
  waitReply(ref, ms = 3000) {
    if (this.vsn.startsWith("1.")) {
      return this.waitMsg((m) => !Array.isArray(m) && m.event === "phx_reply" && m.ref === ref, ms, `V1 reply to ${ref}`);
    }
    return this.waitMsg((m) => Array.isArray(m) && m[3] === "phx_reply" && m[1] === ref, ms, `V2 reply to ref ${ref}`);
  }

  /**
   * Waits `ms`, then asserts that no frame received so far (from index `from`)
   * matches pred; throws naming the frame if one does. Use unique refs in pred.
   */
  async expectNone(pred, ms, what, from = 0) {
    await sleep(ms);
    const i = this.indexOf(pred, from);
    if (i >= 0) throw new Error(`expected no ${what} within ${ms}ms, got ${this.frames[i].text}`);
  }

  /** V2 join with join_ref = ref; resolves `{ joinRef, reply }` (reply = the reply array). */
  async join(topic, payload = {}, ms = 3000) {
    const ref = this.ref();
    this.send([ref, ref, topic, "phx_join", payload]);
    const reply = await this.waitReply(ref, ms);
    return { joinRef: ref, reply };
  }

  /** V2 join that must succeed; resolves the join_ref. */
  async joinOk(topic, payload = {}, ms = 3000) {
    const { joinRef, reply } = await this.join(topic, payload, ms);
    if (!reply[4] || reply[4].status !== "ok") throw new Error(`join ${topic}: ${JSON.stringify(reply)}`);
    return joinRef;
  }

  /** V2 message on topic with joinRef; resolves the reply array. */
  async call(joinRef, topic, event, payload, ms = 3000) {
    const ref = this.ref();
    this.send([joinRef, ref, topic, event, payload]);
    return this.waitReply(ref, ms);
  }

  /** V2 heartbeat; resolves the reply array. */
  async heartbeat(ms = 3000) {
    const ref = this.ref();
    this.send([null, ref, "phoenix", "heartbeat", {}]);
    return this.waitReply(ref, ms);
  }

  /** Resolves `{code, reason}` once the server closed the connection; rejects after `ms`. */
  waitClose(ms = 3000) {
    return withTimeout(
      new Promise((resolve) => {
        const w = () => {
          if (this.closed) {
            resolve(this.closed);
            return true;
          }
          return false;
        };
        if (!w()) this.waiters.push(w);
      }),
      ms,
      "connection close",
    );
  }

  close() {
    try {
      this.ws.close();
    } catch {
      /* ignore */
    }
    setTimeout(() => {
      try {
        this.ws.terminate();
      } catch {
        /* ignore */
      }
    }, 200).unref();
  }
}

/** afterEach handler: closes every raw client and phoenix.js socket a test opened. */
export async function cleanupAll() {
  for (const c of liveRaw) c.close();
  liveRaw.clear();
  await cleanupSockets();
}

// ------------------------------------------------------------------ examples

/**
 * Starts a built example (`target/release/examples/NAME`, or the path in the
 * env variable `envVar`) on a free port and waits for its
 * `listening on http://127.0.0.1:PORT` line, with `env` added to its
 * environment. Fails loudly when the binary is missing. Resolves
 * `{ proc, port }`; kill `proc` when done.
 */
export async function startExample(name, envVar, env = {}) {
  const { spawn } = await import("node:child_process");
  const { existsSync } = await import("node:fs");
  const { fileURLToPath } = await import("node:url");
  const path = (await import("node:path")).default;
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
  const bin = process.env[envVar] || path.join(root, `target/release/examples/${name}`);
  if (!existsSync(bin)) {
    throw new Error(`${bin} is missing: build it with \`cargo build --release --example ${name}\``);
  }
  const port = await freePort();
  const proc = spawn(bin, ["--port", String(port)], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, NO_COLOR: "1", ...env },
  });
  await withTimeout(
    new Promise((resolve, reject) => {
      let out = "";
      proc.stdout.on("data", (d) => {
        out += d;
        if (out.includes(`listening on http://127.0.0.1:${port}`)) resolve();
      });
      proc.on("exit", (code) => reject(new Error(`${name} exited with ${code}`)));
    }),
    10_000,
    `the ${name} example to listen`,
  );
  return { proc, port };
}
