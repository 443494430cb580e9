// permessage-deflate with phoenix.js in headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core): a `discuss` of its own,
// started here with DISCUSS_COMPRESS=1 (SocketOptions::compress), serves the
// demo page; the browser offers the extension (every browser does), the
// server agrees, and two visitors exchange comments long enough to be
// compressed (the server leaves messages under 256 bytes as they are). The
// handshake's answer is read through the Chrome DevTools Protocol, and the
// server's `messages_compressed` counter (GET /api/stats) proves the
// messages went compressed: one compression per broadcast, though two
// subscribers got it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { startExample, uid, withTimeout } from "./lib/helpers.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const TOKEN = "compression-test-token";
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

let browser;
let server;
let base;

before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found (./test.sh installs it; or: apt-get install chromium; or set CHROMIUM_PATH)`);
  }
  const data = mkdtempSync(join(os.tmpdir(), "discuss-compression-"));
  let port;
  ({ proc: server, port } = await startExample("discuss", "DISCUSS_BIN", {
    RUST_LOG: "warn",
    DISCUSS_COMPRESS: "1",
    DISCUSS_ADMIN_TOKEN: TOKEN,
    DATABASE_URL: `sqlite://${data}/discuss.db`,
  }));
  base = `http://127.0.0.1:${port}`;
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 30_000 });
});

after(async () => {
  if (browser) await browser.close();
  if (server) server.kill();
});

async function compressed() {
  const res = await fetch(`${base}/api/stats`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(res.status, 200, `GET /api/stats: ${res.status}`);
  return (await res.json()).metrics.messages_compressed;
}

/** A visitor of the demo page; `extensions` is what the server answered its WebSocket. */
async function visitor(path) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  const handshake = new Promise((resolve) =>
    cdp.on("Network.webSocketHandshakeResponseReceived", (e) => {
      const headers = Object.fromEntries(Object.entries(e.response.headers).map(([k, v]) => [k.toLowerCase(), v]));
      resolve(headers["sec-websocket-extensions"] ?? null);
    }),
  );
  await page.goto(`${base}${path}`);
  await page.waitForSelector('body[data-connection="open"]');
  const extensions = await withTimeout(handshake, 5000, "the WebSocket handshake");
  return { page, problems, extensions };
}

test("phoenix.js in Chromium negotiates permessage-deflate and reads compressed broadcasts", { timeout: 60_000 }, async () => {
  const a = await visitor("/");
  const b = await visitor("/");
  for (const v of [a, b]) {
    assert.equal(v.extensions, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
  }
  const id = uid();
  for (const v of [a, b]) {
    await v.page.fill("#topic-input", id);
    await v.page.click("#topic-form button");
    await v.page.waitForSelector("#comments-empty:has-text('No comments yet')");
  }
  const before = await compressed();
  // Long enough to be compressed: the broadcast carries it with its topic and ids.
  const long = `A long comment from Ada, repeated so that it compresses well. `.repeat(10).trim();
  await a.page.fill("#comment-input", long);
  await a.page.press("#comment-input", "Enter");
  await b.page.waitForSelector(`#comments li .content:text-is("${long}")`);
  await a.page.waitForSelector(`#comments li .content:text-is("${long}")`);
  const short = "Short, so sent as it is.";
  await b.page.fill("#comment-input", short);
  await b.page.press("#comment-input", "Enter");
  await a.page.waitForSelector(`#comments li .content:text-is("${short}")`);
  // The long comment's broadcast, compressed once for both visitors; the
  // short one's went uncompressed, and so did every reply.
  assert.equal((await compressed()) - before, 1);
  // A third visitor gets both comments in its join reply (compressed: it is long).
  const c = await visitor(`/#${id}`);
  await c.page.waitForSelector(`#comments li .content:text-is("${short}")`);
  assert.equal((await compressed()) - before, 2);
  for (const v of [a, b, c]) {
    assert.deepEqual(v.problems, []);
    await v.page.context().close();
  }
});
