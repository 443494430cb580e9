// What a TLS connection costs the server, against the plain path, measured
// on the `echo` example (a raw transport: the same connection loop as
// Phoenix sockets, without channels). Starts the example twice (ws:// and
// wss:// with --tls), and for each:
//   idle:  N connections opened and kept; the server's RSS before and after
//          (bytes per connection);
//   echo:  M messages of SIZE bytes sent and echoed, W in flight per
//          connection over C connections; the server's CPU time (user +
//          sys, from /proc) per message: one read and one write, so one
//          decryption and one encryption with TLS (a broadcast is one
//          encryption per subscriber).
// Prints one JSON line per mode and the TLS / plain ratios.
//
//   node bench/tls/measure.mjs [N=2000] [M=20000] [SIZE=4096]
//
// Needs target/release/examples/echo (cargo build --release --example echo)
// and tests/js/node_modules (npm ci in tests/js).
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import path from "node:path";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const require = createRequire(path.join(root, "tests/js/package.json"));
const WebSocket = require("ws");

const [N, M, SIZE] = [2000, 20000, 4096].map((d, i) => Number(process.argv[2 + i] ?? d));
const C = 50;
const TICK = 100; // clock ticks per second (getconf CLK_TCK on Linux)

const rss = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]) * 1024;
const cpu = (pid) => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICK; // utime + stime, seconds
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function start(args) {
  const server = spawn(path.join(root, "target/release/examples/echo"), ["--port", "0", ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = await new Promise((resolve, reject) => {
    let out = "";
    server.stdout.on("data", (d) => {
      out += d;
      const m = /listening on (\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    server.on("exit", () => reject(new Error("echo exited")));
  });
  return { server, url };
}

function open(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { rejectUnauthorized: false, perMessageDeflate: false });
    ws.on("open", () => resolve(ws));
    ws.on("error", reject);
  });
}

async function measure(mode, args) {
  const { server, url } = await start(args);
  await sleep(500);
  const before = rss(server.pid);
  const sockets = [];
  for (let i = 0; i < N; i += 50) {
    sockets.push(...(await Promise.all(Array.from({ length: Math.min(50, N - i) }, () => open(url)))));
  }
  await sleep(2000);
  const idle = rss(server.pid);
  // Echo: C connections, each sending M / C messages one after the other.
  const payload = Buffer.alloc(SIZE, "x").toString();
  const cpu0 = cpu(server.pid);
  const t0 = process.hrtime.bigint();
  await Promise.all(
    sockets.slice(0, C).map(
      (ws) =>
        new Promise((resolve) => {
          let left = M / C;
          ws.on("message", () => (--left === 0 ? resolve() : ws.send(payload)));
          ws.send(payload);
        }),
    ),
  );
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  await sleep(200);
  const cpuPerMessage = (cpu(server.pid) - cpu0) / M;
  const result = {
    mode,
    connections: N,
    rss_before: before,
    rss_idle: idle,
    bytes_per_idle_connection: Math.round((idle - before) / N),
    messages: M,
    size: SIZE,
    server_cpu_us_per_echo: +(cpuPerMessage * 1e6).toFixed(1),
    echoes_per_s: Math.round(M / seconds),
  };
  console.log(JSON.stringify(result));
  for (const ws of sockets) ws.terminate();
  server.kill();
  await sleep(300);
  return result;
}

const plain = await measure("plain", []);
const tls = await measure("tls", ["--tls"]);
console.log(
  JSON.stringify({
    ratio_tls_to_plain: {
      bytes_per_idle_connection: +(tls.bytes_per_idle_connection / plain.bytes_per_idle_connection).toFixed(2),
      server_cpu_per_echo: +(tls.server_cpu_us_per_echo / plain.server_cpu_us_per_echo).toFixed(2),
    },
  }),
);
