// phoenix.js subscribers for the recovery fault test (tests/recovery_faults.rs):
// COUNT sockets of the official client, unchanged, each joined to TOPIC and
// recording the `n` of every `shout` it is handed, tracking positions the
// way docs/recovery.md tells any phoenix.js app to.
//
//   node recovery-peers.mjs URL TOPIC COUNT N RECOVER
//
// RECOVER=1: the join params are a function returning {phx_position: the
// last position seen}; RECOVER=0: plain joins (what every Phoenix app does
// today). Prints {"ready": COUNT} once every socket has joined. When stdin
// says "done" (every broadcast was made), waits until every peer has n = N,
// or until nothing arrived for QUIET ms, then prints one line:
// {"peers": [{received, duplicates, disorders, missing, rejoins, notRecovered}, ..]}
// and exits. Exits by itself after 90 s whatever happens.
import { Socket } from "phoenix";
import WebSocket from "ws";
import { createInterface } from "node:readline";

const [url, topic, countArg, nArg, recoverArg] = process.argv.slice(2);
const COUNT = Number(countArg);
const N = Number(nArg);
const RECOVER = recoverArg === "1";
const QUIET = 2000;
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

setTimeout(() => {
  say({ error: "no end within 90 s" });
  process.exit(1);
}, 90_000).unref();

let lastArrival = Date.now();

function peer(index) {
  const socket = new Socket(url, {
    transport: WebSocket,
    params: { peer: `js-${index}` },
    // reconnect and rejoin at once: the proxy cuts connections every second or so
    reconnectAfterMs: () => 20,
    rejoinAfterMs: () => 50,
  });
  const state = { received: [], rejoins: 0, notRecovered: 0, joined: false, recoveries: 0 };
  // --- the pattern docs/recovery.md gives phoenix.js apps ---
  let position = null;
  const TRACE = process.env.FAULT_TRACE;
  const channel = socket.channel(topic, () => {
    if (TRACE) process.stderr.write(`js-${index} join at ${position} last ${state.received.at(-1)}\n`);
    return RECOVER ? { phx_position: position } : {};
  });
  channel.on("phx_recovery", (report, ref) => {
    if (TRACE) process.stderr.write(`js-${index} recovery ${ref} ${JSON.stringify(report)} last ${state.received.at(-1)}\n`);
    position = ref;
    state.recoveries += 1;
    if (state.recoveries > 1 && !report.recovered) state.notRecovered += 1;
  });
  channel.on("shout", (payload, ref) => {
    if (TRACE && state.received.length && payload.n <= state.received.at(-1)) process.stderr.write(`js-${index} disorder ${payload.n} after ${state.received.at(-1)} ref ${ref}\n`);
    position = ref;
    state.received.push(payload.n);
    lastArrival = Date.now();
  });
  // ---
  channel.join().receive("ok", () => {
    if (state.joined) state.rejoins += 1;
    state.joined = true;
  });
  channel.onError(() => {});
  socket.onError(() => {});
  socket.connect();
  return { socket, state };
}

const peers = Array.from({ length: COUNT }, (_, i) => peer(i));

const readyCheck = setInterval(() => {
  if (peers.every((p) => p.state.joined)) {
    clearInterval(readyCheck);
    say({ ready: COUNT });
  }
}, 10);

function report() {
  return peers.map(({ state }) => {
    const got = state.received;
    let duplicates = 0;
    let disorders = 0;
    const seen = new Set();
    for (let i = 0; i < got.length; i++) {
      if (seen.has(got[i])) duplicates += 1;
      seen.add(got[i]);
      if (i > 0 && got[i] <= got[i - 1]) disorders += 1;
    }
    // every peer joined before the first broadcast
    let missing = 0;
    for (let n = 1; n <= N; n++) if (!seen.has(n)) missing += 1;
    return {
      received: got.length,
      duplicates,
      disorders,
      missing,
      rejoins: state.rejoins,
      notRecovered: state.notRecovered,
    };
  });
}

createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim() !== "done") return;
  const finish = setInterval(() => {
    const complete = peers.every(({ state }) => state.received.at(-1) === N);
    if (complete || Date.now() - lastArrival > QUIET) {
      clearInterval(finish);
      say({ peers: report() });
      for (const { socket } of peers) socket.disconnect();
      setTimeout(() => process.exit(0), 50);
    }
  }, 20);
});
