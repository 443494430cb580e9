// The dashboard page: joins its channel over a tiny Phoenix V2 JSON client
// and draws what it is pushed. No build step, no dependency.
//
// Every second the server pushes one "row" per node: the node's counters
// (`metrics`, as the endpoint's MetricsSnapshot), their per-second `rates`,
// its `presences`, largest `topics` and `broker` counters. The charts show
// the sum over the live nodes, one point per row of the node we watch from.

const HISTORY = 120; // points: two minutes
const MIN_WINDOW = 30; // a chart spans at least this many points, so a fresh page is not a sliver
const STALE_MS = 5000; // a node silent this long is left out
const HEARTBEAT_MS = 30000;
const BACKOFF_MS = [1000, 2000, 5000, 10000];

const body = document.body;
const base = body.dataset.base;
const token = new URLSearchParams(location.search).get("token") ?? "";

// ---------------------------------------------------------------- the socket

/** Phoenix's `authToken`: the token in the sub-protocol list, base64url. */
function authProtocols(token) {
  if (!token) return [];
  const bytes = new TextEncoder().encode(token);
  const b64 = btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  return ["phoenix", `base64url.bearer.phx.${b64}`];
}

function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(9));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Joins `topic` on the dashboard's socket, and again after every error or
 * lost connection; hands each push to `onPush(event, payload)`.
 */
function watch(topic, { onStatus, onJoined, onPush }) {
  let ref = 0;
  let joinRef = null;
  let attempts = 0;
  let ws;
  let heartbeat;

  const send = (frame) => ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify(frame));
  const join = () => {
    joinRef = String(++ref);
    send([joinRef, joinRef, topic, "phx_join", {}]);
  };

  const open = () => {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${scheme}//${location.host}${base}/socket/websocket?vsn=2.0.0`, authProtocols(token));
    let opened = false;
    ws.onopen = () => {
      opened = true;
      join();
      heartbeat = setInterval(() => send([null, String(++ref), "phoenix", "heartbeat", {}]), HEARTBEAT_MS);
    };
    ws.onmessage = (message) => {
      const [frameJoinRef, frameRef, frameTopic, event, payload] = JSON.parse(message.data);
      if (frameTopic !== topic || frameJoinRef !== joinRef) return;
      if (event === "phx_reply" && frameRef === joinRef) {
        if (payload.status === "ok") {
          attempts = 0;
          onStatus("live");
          onJoined(payload.response);
        } else {
          onStatus("refused", payload.response?.reason ?? "join refused");
        }
      } else if (event === "phx_error" || event === "phx_close") {
        onStatus("rejoining");
        setTimeout(join, BACKOFF_MS[0]);
      } else {
        onPush(event, payload);
      }
    };
    ws.onclose = () => {
      clearInterval(heartbeat);
      // A socket refused by the guard never opens (browsers do not show why).
      onStatus(opened ? "reconnecting" : "unreachable");
      setTimeout(open, BACKOFF_MS[Math.min(attempts++, BACKOFF_MS.length - 1)]);
    };
  };
  open();
}

// ---------------------------------------------------------------- the figures

const nodes = new Map(); // node name → { row, seen }
const history = []; // { at, figures } of the sum over the live nodes
let localNode = null;
let ticks = 0;

const sum = (rows, pick) => rows.reduce((total, row) => total + (pick(row) ?? 0), 0);
const rate = (rows, name) => (rows.some((row) => row.rates) ? sum(rows, (row) => row.rates?.[name]) : null);
const metric = (rows, name) => sum(rows, (row) => row.metrics[name]);

/** The figures of the cards, summed over `rows`. */
function figures(rows) {
  return {
    connections: metric(rows, "connections_open"),
    accepted: metric(rows, "connections_accepted"),
    refused: metric(rows, "connections_refused"),
    channels: metric(rows, "channels_open"),
    joins_refused: metric(rows, "joins_refused"),
    joins: metric(rows, "joins"),
    joins_rate: rate(rows, "joins"),
    messages_in: metric(rows, "messages_in"),
    messages_in_rate: rate(rows, "messages_in"),
    frames_out: metric(rows, "frames_out"),
    frames_out_rate: rate(rows, "frames_out"),
    bytes_out_rate: rate(rows, "bytes_out"),
    presences: sum(rows, (row) => row.presences),
    slow_consumers: metric(rows, "slow_consumers"),
    channel_crashes: metric(rows, "channel_crashes"),
    join_crashes: metric(rows, "join_crashes"),
    crashes: metric(rows, "channel_crashes") + metric(rows, "join_crashes"),
  };
}

/** The largest topics over `rows`: each node's subscribers added up. */
function topics(rows) {
  const counts = new Map();
  for (const row of rows) for (const [topic, n] of row.topics) counts.set(topic, (counts.get(topic) ?? 0) + n);
  return [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, 8);
}

function setLocalNode(node) {
  localNode = node;
  document.getElementById("local-node").textContent = node;
}

function liveRows() {
  const now = Date.now();
  return [...nodes.values()].filter((n) => now - n.seen < STALE_MS).map((n) => n.row);
}

function onRow(row) {
  nodes.set(row.node, { row, seen: Date.now() });
  if (row.here) {
    // Named anew when presence starts on it: the old name goes.
    if (localNode !== row.node) nodes.delete(localNode);
    setLocalNode(row.node);
    history.push(figures(liveRows()));
    if (history.length > HISTORY) history.shift();
    body.dataset.ticks = String(++ticks);
  }
  render();
}

// ---------------------------------------------------------------- drawing

const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
const count = (n) => (n == null ? "–" : integer.format(n));
const perSecond = (n) => (n == null ? "–" : n < 10 ? decimal.format(n) : integer.format(n));
function bytes(n) {
  if (n == null) return "–";
  const units = ["B/s", "KB/s", "MB/s", "GB/s"];
  let unit = 0;
  while (n >= 1024 && unit < units.length - 1) [n, unit] = [n / 1024, unit + 1];
  return `${decimal.format(n)} ${units[unit]}`;
}

/**
 * The cards: what each shows big (and charts), and the line under it, whose
 * `{name}`s are the figures of `subs` (a figure, or a figure and its format).
 */
const CARDS = [
  { metric: "connections", title: "Connections", accent: "blue", value: "connections", format: count,
    sub: "open now · {accepted} accepted · {refused} refused", subs: { accepted: "accepted", refused: "refused" } },
  { metric: "channels", title: "Joined channels", accent: "violet", value: "channels", format: count,
    sub: "open now · {joins_refused} joins refused", subs: { joins_refused: "joins_refused" } },
  { metric: "joins", title: "Joins", accent: "green", value: "joins_rate", format: perSecond,
    sub: "per second · {total} in all", subs: { total: "joins" } },
  { metric: "messages_in", title: "Messages in", accent: "teal", value: "messages_in_rate", format: perSecond,
    sub: "per second · {total} in all", subs: { total: "messages_in" } },
  { metric: "frames_out", title: "Messages out", accent: "orange", value: "frames_out_rate", format: perSecond,
    sub: "per second · {bytes} · {total} in all", subs: { bytes: ["bytes_out_rate", bytes], total: "frames_out" } },
  { metric: "presences", title: "Presences", accent: "pink", value: "presences", format: count,
    sub: "tracked now", subs: {} },
  { metric: "slow_consumers", title: "Slow consumers", accent: "amber", value: "slow_consumers", format: count,
    sub: "closed for falling behind", subs: {} },
  { metric: "crashes", title: "Crashes", accent: "red", value: "crashes", format: count,
    sub: "{channel_crashes} channels · {join_crashes} joins",
    subs: { channel_crashes: "channel_crashes", join_crashes: "join_crashes" } },
];

const SVG = "http://www.w3.org/2000/svg";

/** A sparkline of `values` (nulls are gaps before the first figure). */
function spark(svg, values) {
  const points = values.map((v, i) => [i, v]).filter(([, v]) => v != null);
  svg.replaceChildren();
  if (points.length < 2) return;
  const max = Math.max(1, ...points.map(([, v]) => v));
  const window = Math.max(MIN_WINDOW, values.length);
  const x = (i) => (i / (window - 1)) * 240;
  const y = (v) => 46 - (v / max) * 42;
  // Right-aligned: the newest point at the right edge.
  const shift = window - values.length;
  const line = points.map(([i, v]) => `${x(i + shift).toFixed(1)},${y(v).toFixed(1)}`).join(" L");
  const first = x(points[0][0] + shift).toFixed(1);
  const last = x(points[points.length - 1][0] + shift).toFixed(1);
  const area = document.createElementNS(SVG, "path");
  area.setAttribute("class", "area");
  area.setAttribute("d", `M${first},48 L${line} L${last},48 Z`);
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("class", "line");
  path.setAttribute("d", `M${line}`);
  svg.append(area, path);
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

/** The cards' elements, made once. */
function makeCards() {
  const section = document.getElementById("cards");
  for (const card of CARDS) {
    const el = Object.assign(document.createElement("article"), { className: "card" });
    el.dataset.metric = card.metric;
    el.dataset.accent = card.accent;
    const sub = Object.assign(document.createElement("p"), { className: "sub" });
    for (const part of card.sub.split(/(\{\w+\})/)) {
      const name = part.match(/^\{(\w+)\}$/)?.[1];
      sub.append(name ? Object.assign(document.createElement("span"), { textContent: "–" }) : part);
      if (name) sub.lastChild.dataset.sub = name;
    }
    const chart = document.createElementNS(SVG, "svg");
    chart.setAttribute("class", "spark");
    chart.setAttribute("viewBox", "0 0 240 48");
    chart.setAttribute("preserveAspectRatio", "none");
    chart.setAttribute("aria-hidden", "true");
    el.append(
      Object.assign(document.createElement("h2"), { textContent: card.title }),
      Object.assign(document.createElement("output"), { className: "value", textContent: "–" }),
      sub,
      chart,
    );
    section.append(el);
  }
}

function render() {
  const rows = liveRows();
  const now = figures(rows);
  for (const card of CARDS) {
    const el = document.querySelector(`[data-metric="${card.metric}"]`);
    el.querySelector(".value").textContent = card.format(now[card.value]);
    // Raw figures for tests and scripts: the exact numbers shown.
    el.dataset.value = now[card.value] ?? "";
    for (const [sub, spec] of Object.entries(card.subs)) {
      const [figure, format] = Array.isArray(spec) ? spec : [spec, count];
      el.querySelector(`[data-sub="${sub}"]`).textContent = format(now[figure]);
      el.dataset[sub] = now[figure] ?? "";
    }
    spark(el.querySelector(".spark"), history.map((h) => h[card.value]));
  }

  const list = document.getElementById("topics");
  const largest = topics(rows);
  const top = Math.max(1, ...largest.map(([, n]) => n));
  list.replaceChildren(
    ...(largest.length === 0
      ? [Object.assign(document.createElement("li"), { className: "empty", textContent: "no topics yet" })]
      : largest.map(([topic, n]) => {
          const li = document.createElement("li");
          li.dataset.topic = topic;
          li.dataset.subscribers = n;
          li.style.setProperty("--share", `${(n / top) * 100}%`);
          const name = Object.assign(document.createElement("span"), { className: "name", textContent: topic });
          const value = Object.assign(document.createElement("span"), { className: "n", textContent: count(n) });
          li.append(name, value);
          return li;
        })),
  );

  const table = document.getElementById("nodes");
  table.replaceChildren(
    ...rows
      .sort((a, b) => (a.node === localNode ? -1 : b.node === localNode ? 1 : a.node.localeCompare(b.node)))
      .map((row) => {
        const f = figures([row]);
        const tr = document.createElement("tr");
        tr.dataset.node = row.node;
        tr.dataset.connections = f.connections;
        tr.dataset.channels = f.channels;
        const broker = row.broker ? `${count(row.broker.published)} / ${count(row.broker.received)}` : "–";
        tr.append(
          cell(row.node + (row.node === localNode ? " (here)" : ""), "node"),
          cell(count(f.connections)),
          cell(count(f.channels)),
          cell(perSecond(f.joins_rate)),
          cell(perSecond(f.messages_in_rate)),
          cell(perSecond(f.frames_out_rate)),
          cell(count(f.presences)),
          cell(count(f.slow_consumers), f.slow_consumers ? "warn" : ""),
          cell(count(f.crashes), f.crashes ? "bad" : ""),
          cell(broker),
        );
        return tr;
      }),
  );
  // A single node has no broker: no column for it.
  table.closest("table").classList.toggle("no-broker", !rows.some((row) => row.broker));
  document.getElementById("nodes-count").textContent = `${rows.length} node${rows.length === 1 ? "" : "s"}`;
}

// ---------------------------------------------------------------- start

const STATUS_TEXT = {
  live: "live",
  rejoining: "rejoining…",
  reconnecting: "reconnecting…",
  unreachable: "cannot connect — is the token right?",
};

makeCards();
watch(`phx_dashboard:${randomId()}`, {
  onStatus(status, reason) {
    body.dataset.status = status;
    document.getElementById("status").textContent = reason ?? STATUS_TEXT[status] ?? status;
  },
  onJoined({ node }) {
    setLocalNode(node);
  },
  onPush(event, payload) {
    if (event === "row") onRow(payload);
  },
});
