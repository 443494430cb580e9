// What permessage-deflate saves on the wire and costs the server, per
// broadcast delivery, measured on the `discuss` example against the floor
// (bench/src/bin/floor.rs: bare tokio-tungstenite, no compression) in the
// same run. Three servers, one after the other, each fresh:
//   floor          the floor (its clients offer compression; it ignores it)
//   discuss        discuss, compression off (the default)
//   discuss+deflate  discuss with DISCUSS_COMPRESS=1, its clients offering
//                  permessage-deflate as browsers do
// For each payload: N subscribers join a fresh `comments:ID`, a publisher
// sends M `comment:add`, each after every subscriber got the previous
// one; per delivery: the bytes the subscribers' sockets read (frames on the
// wire, headers included), and the server's CPU time (user + sys from
// /proc, 10 ms ticks). Payloads: a short comment, as the load generator
// sends them (`"comment 17 from the benchmark"`: its broadcast is under
// the 256 bytes below which nothing is compressed), a paragraph of about
// 400 bytes, and 4 KiB of JSON (the content is a JSON document as a
// string, so the broadcast carries it escaped).
//
//   node bench/deflate/measure.mjs [N=1000] [M=200]
//
// Needs target/release/examples/discuss and target/release/floor
// (bench/run.sh builds both) and tests/js/node_modules (npm ci in tests/js).
import { spawn } from "node:child_process";
import { readFileSync, mkdtempSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import os from "node:os";
import path from "node:path";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const require = createRequire(path.join(root, "tests/js/package.json"));
const WebSocket = require("ws");

const [N, M] = [1000, 200].map((d, i) => Number(process.argv[2 + i] ?? d));
const TICK = 100; // clock ticks per second (getconf CLK_TCK on Linux)

const cpu = (pid) => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICK; // utime + stime, seconds
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function start(name) {
  const tmp = mkdtempSync(path.join(os.tmpdir(), "deflate-bench-"));
  const [bin, env] = {
    floor: ["target/release/floor", {}],
    discuss: ["target/release/examples/discuss", { DISCUSS_MAX_BROADCASTS_PER_SECOND: "0", DISCUSS_MAX_CONNECTIONS_PER_SOURCE: "0" }],
    "discuss+deflate": [
      "target/release/examples/discuss",
      { DISCUSS_MAX_BROADCASTS_PER_SECOND: "0", DISCUSS_MAX_CONNECTIONS_PER_SOURCE: "0", DISCUSS_COMPRESS: "1" },
    ],
  }[name];
  const server = spawn(path.join(root, bin), ["--port", "0"], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, RUST_LOG: "warn", DATABASE_URL: `sqlite://${tmp}/discuss.db`, ...env },
  });
  const port = await new Promise((resolve, reject) => {
    let out = "";
    server.stdout.on("data", (d) => {
      out += d;
      const m = /listening on http:\/\/[^:]+:(\d+)/.exec(out);
      if (m) resolve(m[1]);
    });
    server.on("exit", () => reject(new Error(`${name} exited`)));
  });
  return { server, url: `ws://127.0.0.1:${port}/socket/websocket?vsn=2.0.0` };
}

function open(url, deflate) {
  return new Promise((resolve, reject) => {
    // ws offers `permessage-deflate; client_max_window_bits`, as browsers do.
    const ws = new WebSocket(url, { perMessageDeflate: deflate ? {} : false });
    ws.on("open", () => resolve(ws));
    ws.on("error", reject);
  });
}

const join = (ws, topic) =>
  new Promise((resolve) => {
    const onMessage = (data) => {
      const [, ref, , event] = JSON.parse(data);
      if (ref === "1" && event === "phx_reply") {
        ws.off("message", onMessage);
        resolve();
      }
    };
    ws.on("message", onMessage);
    ws.send(JSON.stringify(["1", "1", topic, "phx_join", {}]));
  });

const payloads = {
  comment: (seq) => `comment ${seq} from the benchmark`,
  // A paragraph, as people write them: about 400 bytes of prose.
  comment400: (seq) =>
    `Comment ${seq}: I tried the new build on the staging cluster this morning and the numbers look ` +
    `much better than last week. The dashboard loads in under a second now, and the broadcast ` +
    `latency stayed flat while we pushed the load up. There is still one odd spike around the ` +
    `hour mark, which I think is the backup job; I will look at it after lunch and report back here.`,
  json4k: (seq) => {
    const items = [];
    for (let i = 0; JSON.stringify(items).length < 4000; i++) {
      items.push({ id: seq * 100 + i, user: `user-${i % 7}`, body: "a comment", at: "2026-12-07T13:00:00Z" });
    }
    return JSON.stringify(items);
  },
};

async function measure(name, payloadName) {
  const { server, url } = await start(name);
  const deflate = name !== "discuss";
  await sleep(500);
  const topic = `comments:${Date.now() % 1_000_000_000}`;
  const subscribers = [];
  for (let i = 0; i < N; i += 50) {
    const batch = await Promise.all(Array.from({ length: Math.min(50, N - i) }, () => open(url, deflate)));
    await Promise.all(batch.map((ws) => join(ws, topic)));
    subscribers.push(...batch);
  }
  const compressed = subscribers.filter((ws) => ws.extensions.includes("permessage-deflate")).length;
  const publisher = await open(url, false);
  await join(publisher, topic);
  let got = 0;
  let done = null;
  for (const ws of subscribers) {
    ws.on("message", () => {
      if (++got === N && done) done();
    });
  }
  // What the server spends with nobody sending (timers, the idle
  // watchdog), per second: a slower run (the subscribers inflating in
  // Node) would otherwise count more of it per delivery.
  const idle0 = cpu(server.pid);
  await sleep(3000);
  const idlePerSecond = (cpu(server.pid) - idle0) / 3;
  const read0 = subscribers.reduce((sum, ws) => sum + ws._socket.bytesRead, 0);
  const cpu0 = cpu(server.pid);
  const t0 = process.hrtime.bigint();
  // discuss holds a sender to 256 KiB of broadcasts a second
  // (SocketOptions::max_broadcast_bytes_per_second): a refused comment is
  // sent again a little later (the floor has no such limit).
  const replies = new Map();
  publisher.on("message", (data) => {
    const [, ref, , event, payload] = JSON.parse(data);
    if (event === "phx_reply" && replies.has(ref)) replies.get(ref)(payload.status);
  });
  let refused = 0;
  for (let seq = 0; seq < M; seq++) {
    got = 0;
    const all = new Promise((resolve) => (done = resolve));
    for (let attempt = 0; ; attempt++) {
      const ref = `${seq}.${attempt}`;
      const status = new Promise((resolve) => replies.set(ref, resolve));
      publisher.send(JSON.stringify(["1", ref, topic, "comment:add", { content: payloads[payloadName](seq) }]));
      if ((await status) === "ok") break;
      refused++;
      await sleep(50);
    }
    await all;
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  await sleep(200);
  const deliveries = N * M;
  const read = subscribers.reduce((sum, ws) => sum + ws._socket.bytesRead, 0) - read0;
  const result = {
    server: name,
    payload: payloadName,
    subscribers: N,
    compressed_subscribers: compressed,
    messages: M,
    refused_and_resent: refused,
    bytes_per_delivery: Math.round(read / deliveries),
    server_cpu_us_per_delivery: +(((cpu(server.pid) - cpu0) / deliveries) * 1e6).toFixed(2),
    server_idle_cpu_ms_per_s: +(idlePerSecond * 1e3).toFixed(1),
    // Less the idle rate over the run's wall time.
    server_net_cpu_us_per_delivery: +(((cpu(server.pid) - cpu0 - idlePerSecond * seconds) / deliveries) * 1e6).toFixed(2),
    deliveries_per_s: Math.round(deliveries / seconds),
    loadavg: os.loadavg()[0],
  };
  console.log(JSON.stringify(result));
  for (const ws of [...subscribers, publisher]) ws.terminate();
  server.kill();
  await sleep(300);
  return result;
}

for (const payload of Object.keys(payloads)) {
  const results = {};
  for (const name of ["floor", "discuss", "discuss+deflate"]) results[name] = await measure(name, payload);
  const ratio = (a, b, key) => +(results[a][key] / results[b][key]).toFixed(2);
  console.log(
    JSON.stringify({
      payload,
      bytes: { discuss_to_floor: ratio("discuss", "floor", "bytes_per_delivery"), deflate_to_floor: ratio("discuss+deflate", "floor", "bytes_per_delivery") },
      cpu: { discuss_to_floor: ratio("discuss", "floor", "server_cpu_us_per_delivery"), deflate_to_floor: ratio("discuss+deflate", "floor", "server_cpu_us_per_delivery") },
      net_cpu: { discuss_to_floor: ratio("discuss", "floor", "server_net_cpu_us_per_delivery"), deflate_to_floor: ratio("discuss+deflate", "floor", "server_net_cpu_us_per_delivery") },
    }),
  );
}
