// The live dashboard the discuss example mounts at /dashboard
// (Endpoint::dashboard, guarded by DISCUSS_DASHBOARD_TOKEN), in headless
// Chromium (/usr/bin/chromium, driven by playwright-core) while a scripted
// phoenix.js load runs: the page and its socket refuse requests without the
// token, its figures move with the load, and once the load is quiet they
// are the server's own counters (GET /api/stats). Screenshot:
// tests/js/artifacts/dashboard.png.
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join as joinPath } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { ADMIN_TOKEN, HTTP_BASE, cleanupAll, joinOk, openSocket, push, sleep, uid } from "./lib/helpers.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const ARTIFACTS = joinPath(dirname(fileURLToPath(import.meta.url)), "artifacts");
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"];
/** The dashboard's token (scripts/start-discuss.sh sets the same default). */
const TOKEN = process.env.DISCUSS_DASHBOARD_TOKEN || "test-dashboard-token";

let browser;

before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: the dashboard test needs chromium (./test.sh installs it; or set CHROMIUM_PATH)`);
  }
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 30_000 });
});

after(async () => {
  if (browser) await browser.close();
});

afterEach(cleanupAll);

/** The server's counters (Endpoint::metrics), from GET /api/stats. */
async function serverMetrics() {
  const res = await fetch(`${HTTP_BASE}/api/stats`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  assert.equal(res.status, 200, "GET /api/stats");
  return (await res.json()).metrics;
}

/** The figures the page shows: its cards' raw numbers. */
const shown = (page) =>
  page.evaluate(() => {
    const card = (name) => document.querySelector(`[data-metric="${name}"]`).dataset;
    const number = (text) => (text === "" || text === undefined ? null : Number(text));
    return {
      ticks: Number(document.body.dataset.ticks),
      connections: number(card("connections").value),
      channels: number(card("channels").value),
      joins: number(card("joins").total),
      joinsPerSecond: number(card("joins").value),
      messagesIn: number(card("messages_in").total),
      messagesInPerSecond: number(card("messages_in").value),
      framesOutPerSecond: number(card("frames_out").value),
      presences: number(card("presences").value),
      topics: [...document.querySelectorAll("#topics li[data-topic]")].map((li) => [li.dataset.topic, Number(li.dataset.subscribers)]),
      nodes: [...document.querySelectorAll("#nodes tr")].map((tr) => tr.dataset.node),
    };
  });

test("the dashboard page and its socket refuse requests without the token", { timeout: 10_000 }, async () => {
  assert.equal((await fetch(`${HTTP_BASE}/dashboard`)).status, 401);
  assert.equal((await fetch(`${HTTP_BASE}/dashboard?token=guess`)).status, 403);
  // A page opened with a wrong token loads nothing and says it cannot connect.
  const context = await browser.newContext();
  const page = await context.newPage();
  const res = await page.goto(`${HTTP_BASE}/dashboard?token=guess`);
  assert.equal(res.status(), 403);
  await context.close();
});

test("the dashboard follows a scripted load and shows the server's counters", { timeout: 30_000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 820 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => m.type() === "error" && problems.push(`console error: ${m.text()}`));
  const res = await page.goto(`${HTTP_BASE}/dashboard?token=${encodeURIComponent(TOKEN)}`);
  assert.equal(res.status(), 200, `GET /dashboard: HTTP ${res.status()}`);
  await page.waitForSelector('body[data-status="live"]');
  await page.waitForFunction(() => Number(document.body.dataset.ticks) >= 1);
  const start = await shown(page);

  // The load: 12 clients join a topic's comments and its room (tracked in
  // presence), ping and comment for a few seconds.
  const id = uid();
  const clients = [];
  for (let i = 0; i < 12; i++) {
    const socket = await openSocket({ params: { user_id: `load-${i}` } });
    const comments = socket.channel(`comments:${id}`, {});
    const room = socket.channel(`room:${id}`, { name: `visitor ${i}` });
    await joinOk(comments);
    await joinOk(room);
    clients.push({ socket, comments });
  }
  const peaks = { joinsPerSecond: 0, messagesInPerSecond: 0, framesOutPerSecond: 0 };
  const loadUntil = Date.now() + 4000;
  for (let round = 0; Date.now() < loadUntil; round++) {
    await Promise.all(
      clients.map(({ comments }, i) =>
        round % 5 === 0 && i === 0 ? push(comments, "comment:add", { content: `load ${round}` }) : push(comments, "ping", { round }),
      ),
    );
    const now = await shown(page);
    for (const k of Object.keys(peaks)) peaks[k] = Math.max(peaks[k], now[k] ?? 0);
    await sleep(100);
  }

  // The figures moved with the load.
  assert.ok(peaks.joinsPerSecond > 0, `joins per second moved: ${JSON.stringify(peaks)}`);
  assert.ok(peaks.messagesInPerSecond >= 12, `messages in per second moved: ${JSON.stringify(peaks)}`);
  assert.ok(peaks.framesOutPerSecond >= 12, `messages out per second moved: ${JSON.stringify(peaks)}`);
  const during = await shown(page);
  assert.ok(during.ticks > start.ticks + 3, `the page ticked: ${start.ticks} → ${during.ticks}`);
  assert.ok(during.joins >= start.joins + 24, `joins: ${start.joins} → ${during.joins}`);
  assert.ok(during.presences >= 12, `presences: ${during.presences}`);
  assert.deepEqual(
    during.topics.filter(([topic]) => topic.endsWith(id)).sort(),
    [[`comments:${id}`, 12], [`room:${id}`, 12]],
    "the load's topics among the largest",
  );
  assert.equal(during.nodes.length, 1, "one node, one row");

  // Quiet now: the page settles on the server's counters (the dashboard's
  // own connection is in neither).
  let last;
  const deadline = Date.now() + 5000;
  for (;;) {
    const server = await serverMetrics();
    const figures = await shown(page);
    last = { server, page: figures };
    const same =
      figures.connections === server.connections_open &&
      figures.channels === server.channels_open &&
      figures.joins === server.joins &&
      figures.messagesIn === server.messages_in;
    if (same) break;
    assert.ok(Date.now() < deadline, `the page never showed the server's counters: ${JSON.stringify(last)}`);
    await sleep(250);
  }
  assert.ok(last.server.connections_open >= 12 && last.server.channels_open >= 24, JSON.stringify(last.server));

  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: joinPath(ARTIFACTS, "dashboard.png"), fullPage: true });
  assert.deepEqual(problems, [], "no errors on the page");
  await context.close();
});
