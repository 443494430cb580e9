// The brokers tests/js/multinode.test.mjs runs `discuss` nodes on, each
// started on free loopback ports in a fresh temporary folder:
//
//   redis    one standalone redis-server                 -> REDIS_URL
//   cluster  a Redis Cluster of 3 masters (no replicas)   -> REDIS_CLUSTER_URLS
//   nats     one nats-server                             -> NATS_URL
//
// startBroker(engine) resolves `{ engine, env, stop(), restart() }`: `env`
// holds the variables a node needs to use the broker; `restart()` kills the
// broker and starts it again on the same ports (the cluster: every node,
// from its nodes.conf), resolving once it serves again; `stop()` kills it
// for good and removes its folder. A missing binary fails loudly, naming the
// package to install; nothing is skipped.
//
// Processes (brokers and the tests' own, via spawnReady) are tracked here:
// killAll() kills whatever is still running, and so does the exit of the
// test process (SIGINT and SIGTERM included), so a failing or interrupted
// run leaves nothing behind.
import { spawn, execFile, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, createWriteStream, mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, sleep } from "./helpers.mjs";

export const ENGINES = ["redis", "cluster", "nats"];

/** Where the processes' output goes: tests/js/artifacts/multinode/ (ignored by git). */
export const LOG_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../artifacts/multinode");

// ------------------------------------------------------------------ processes

const live = new Set();
/** The brokers' folders not removed yet. */
const dirs = new Set();

// Each run starts afresh (the names hold ports, so runs would pile up).
rmSync(LOG_DIR, { recursive: true, force: true });

function killLiveNow() {
  for (const proc of live) {
    try {
      proc.kill("SIGKILL");
    } catch {
      /* gone */
    }
  }
}
process.on("exit", () => {
  killLiveNow();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});
// A run interrupted (Ctrl-C, a CI timeout) does not reach "exit" by itself.
for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]]) {
  process.once(signal, () => {
    killLiveNow();
    process.exit(code);
  });
}

/** Throws with an install hint unless `bin --version` runs. */
export function requireBinary(bin, hint) {
  try {
    execFileSync(bin, ["--version"], { stdio: "ignore" });
  } catch {
    throw new Error(`${bin} is missing: ${hint}`);
  }
}

/**
 * Spawns `bin args` and resolves the process once `ready` appears in its
 * output (stdout or stderr); rejects, with the output's tail, when it exits
 * first or after `ms`. Its whole output goes to LOG_DIR/`log`.log. The
 * process is tracked until it exits (see killAll).
 */
export function spawnReady(bin, args, { env = process.env, ready, ms = 10_000, what = bin, log } = {}) {
  mkdirSync(LOG_DIR, { recursive: true });
  const file = createWriteStream(path.join(LOG_DIR, `${log || path.basename(bin)}.log`), { flags: "w" });
  const proc = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"], env });
  live.add(proc);
  let tail = "";
  let done = false;
  return new Promise((resolve, reject) => {
    const finish = (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        kill(proc).then(() => reject(new Error(`${what}: ${err}; its output ends:\n${tail.slice(-2000)}`)));
      } else {
        resolve(proc);
      }
    };
    const timer = setTimeout(() => finish(`not ready ("${ready}") after ${ms} ms`), ms);
    const onData = (d) => {
      file.write(d);
      if (done) return;
      tail = (tail + d).slice(-8000);
      if (tail.includes(ready)) finish();
    };
    proc.stdout.on("data", onData);
    proc.stderr.on("data", onData);
    proc.on("error", (e) => finish(`could not start: ${e.message}`));
    proc.on("exit", (code, signal) => {
      live.delete(proc);
      finish(`exited (code ${code}, signal ${signal}) before it was ready`);
    });
    // After "exit", output may still be on its way: the log ends once the pipes closed.
    proc.on("close", () => file.end());
  });
}

/** SIGKILLs `proc` (if still running); resolves once it exited. */
export function kill(proc) {
  return new Promise((resolve) => {
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return resolve();
    proc.once("exit", () => resolve());
    proc.kill("SIGKILL");
  });
}

/** Kills every process started through spawnReady that still runs. */
export const killAll = () => Promise.all([...live].map(kill));

// ------------------------------------------------------------------ ports

function portFree(port) {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

/** `n` distinct free ports P whose P+10000 (a cluster node's bus port) is free too. */
async function clusterPorts(n) {
  const ports = [];
  for (let tries = 0; ports.length < n; tries++) {
    if (tries > 200) throw new Error("found no free port P with P+10000 free on 127.0.0.1");
    const p = await freePort();
    const taken = ports.flatMap((q) => [q, q + 10000]);
    if (p + 10000 > 65535 || taken.includes(p) || taken.includes(p + 10000)) continue;
    if (await portFree(p + 10000)) ports.push(p);
  }
  return ports;
}

// ------------------------------------------------------------------ redis-cli

function redisCli(args, ms = 5000) {
  return new Promise((resolve, reject) => {
    execFile("redis-cli", args, { timeout: ms }, (err, stdout, stderr) => {
      if (err) reject(new Error(`redis-cli ${args.join(" ")}: ${err.message} ${stderr}`));
      else resolve(stdout);
    });
  });
}

/** Resolves once every node answers CLUSTER INFO with cluster_state:ok and knows them all. */
async function clusterOk(ports, ms = 20_000) {
  const deadline = Date.now() + ms;
  let last = "";
  for (;;) {
    const infos = await Promise.all(ports.map((p) => redisCli(["-h", "127.0.0.1", "-p", String(p), "cluster", "info"]).catch((e) => e.message)));
    const ok = infos.every((i) => i.includes("cluster_state:ok") && i.includes(`cluster_known_nodes:${ports.length}`));
    if (ok) return;
    last = infos.map((i, k) => `${ports[k]}: ${i.split(/\r?\n/).filter((l) => /state|known|slots_ok/.test(l)).join(" ")}`).join("; ");
    if (Date.now() > deadline) throw new Error(`the Redis Cluster on ${ports} is not ok after ${ms} ms: ${last}`);
    await sleep(100);
  }
}

// ------------------------------------------------------------------ engines

const REDIS_HINT = "install Debian's redis-server (apt-get install -y redis-server; ./test.sh does)";

function redisArgs(port, dir, cluster) {
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir];
  if (cluster) {
    args.push("--cluster-enabled", "yes", "--cluster-config-file", path.join(dir, `nodes-${port}.conf`), "--cluster-node-timeout", "2000");
  }
  return args;
}

const startRedisServer = (port, dir, cluster, label) =>
  spawnReady("redis-server", redisArgs(port, dir, cluster), {
    ready: "Ready to accept connections",
    what: `redis-server on ${port}`,
    log: `${label}-redis-${port}`,
  });

async function redis(dir, label) {
  requireBinary("redis-server", REDIS_HINT);
  const port = await freePort();
  let proc = await startRedisServer(port, dir, false, label);
  return {
    env: { REDIS_URL: `redis://127.0.0.1:${port}` },
    async restart() {
      await kill(proc);
      proc = await startRedisServer(port, dir, false, label);
    },
    stop: () => kill(proc),
  };
}

async function cluster(dir, label) {
  requireBinary("redis-server", REDIS_HINT);
  requireBinary("redis-cli", REDIS_HINT);
  const ports = await clusterPorts(3);
  let procs = [];
  const startAll = async () => {
    // Collected one by one, so a node that fails to start does not leave the others untracked.
    const started = await Promise.allSettled(ports.map((p) => startRedisServer(p, dir, true, label)));
    procs = started.filter((s) => s.status === "fulfilled").map((s) => s.value);
    const failed = started.find((s) => s.status === "rejected");
    if (failed) throw failed.reason;
  };
  const stop = () => Promise.all(procs.map(kill));
  try {
    await startAll();
    await redisCli(["--cluster", "create", ...ports.map((p) => `127.0.0.1:${p}`), "--cluster-yes"], 30_000);
    await clusterOk(ports);
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    env: { REDIS_CLUSTER_URLS: ports.map((p) => `redis://127.0.0.1:${p}`).join(",") },
    ports,
    async restart() {
      await stop();
      await startAll();
      await clusterOk(ports);
    },
    stop,
  };
}

async function nats(dir, label) {
  requireBinary("nats-server", "install it (apt-get install -y nats-server)");
  const port = await freePort();
  // JetStream (`-js`): discuss's `comments:*` keep history, which NATS keeps
  // in JetStream streams (docs/recovery.md); its store in this run's dir.
  const start = () =>
    spawnReady("nats-server", ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", path.join(dir, `js-${port}`)], {
      ready: "Server is ready",
      what: `nats-server on ${port}`,
      log: `${label}-nats-${port}`,
    });
  let proc = await start();
  return {
    env: { NATS_URL: `nats://127.0.0.1:${port}` },
    async restart() {
      await kill(proc);
      proc = await start();
    },
    stop: () => kill(proc),
  };
}

const STARTERS = { redis, cluster, nats };

/**
 * The engines MULTINODE_ENGINES names (comma-separated; default: all of
 * ENGINES); throws on an unknown one.
 */
export function selectedEngines(value = process.env.MULTINODE_ENGINES) {
  if (!value || !value.trim()) return [...ENGINES];
  const engines = value.split(",").map((e) => e.trim().toLowerCase()).filter(Boolean);
  for (const e of engines) {
    if (!STARTERS[e]) throw new Error(`MULTINODE_ENGINES: unknown engine ${e} (known: ${ENGINES.join(", ")})`);
  }
  return engines;
}

/** Starts `engine`'s broker; see the top of this file. */
export async function startBroker(engine) {
  const starter = STARTERS[engine];
  if (!starter) throw new Error(`unknown broker engine ${engine} (known: ${ENGINES.join(", ")})`);
  const dir = mkdtempSync(path.join(tmpdir(), `multinode-${engine}-`));
  dirs.add(dir);
  let broker;
  try {
    broker = await starter(dir, engine);
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    dirs.delete(dir);
    throw e;
  }
  return {
    ...broker,
    engine,
    dir,
    async stop() {
      await broker.stop();
      rmSync(dir, { recursive: true, force: true });
      dirs.delete(dir);
    },
  };
}
