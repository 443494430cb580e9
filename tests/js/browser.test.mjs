// The demo page served by the discuss example at `/`, in headless Chromium
// (Debian's /usr/bin/chromium, installed by test.sh, driven by playwright-core):
// two visitors (separate browser contexts, one over WebSocket, one forced to
// LongPoll with ?transport=longpoll) open the same fresh topic and join its
// room; a comment typed in one appears live in the other, both see each
// other in "who's here". Screenshots go to tests/js/artifacts/demo*.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { HTTP_BASE, uid } from "./lib/helpers.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), "artifacts");
// The flags this machine needs (no GPU, no network but loopback).
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let browser;

before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `${CHROMIUM} not found: the browser test needs Debian's chromium ` +
        `(./test.sh installs it; or: apt-get install chromium; or set CHROMIUM_PATH)`,
    );
  }
  // launch() starts Chromium with a fresh, empty --user-data-dir of its own
  // (a temporary folder Playwright deletes on close).
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 30_000 });
});

after(async () => {
  if (browser) await browser.close();
});

/** A page in a context of its own, collecting page errors and console errors. */
async function visitor(path) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console error: ${m.text()}`);
  });
  const res = await page.goto(`${HTTP_BASE}${path}`);
  assert.equal(res.status(), 200, `GET ${path}: HTTP ${res.status()} ${await res.text()}`);
  await page.waitForSelector('body[data-connection="open"]');
  return { page, problems };
}

async function openTopic(page, id) {
  await page.fill("#topic-input", id);
  await page.click("#topic-form button");
  await page.waitForSelector("#comments-empty:has-text('No comments yet')");
}

async function joinRoom(page, name) {
  await page.fill("#name-input", name);
  await page.click("#room-form button");
  await page.waitForSelector(`#presence li[data-name="${name}"]`);
}

const names = (page) => page.$$eval("#presence li", (lis) => lis.map((li) => li.dataset.name).sort());
const comments = (page) => page.$$eval("#comments li .content", (ps) => ps.map((p) => p.textContent));

test("demo page: two visitors, a comment typed in one appears in the other, both are listed as present, a dropped connection recovers", { timeout: 60_000 }, async () => {
  const a = await visitor("/");
  const b = await visitor("/?transport=longpoll");
  assert.equal(await a.page.getAttribute("body", "data-transport"), "WebSocket");
  assert.equal(await b.page.getAttribute("body", "data-transport"), "LongPoll");

  const id = uid();
  await openTopic(a.page, id);
  await openTopic(b.page, id);
  await joinRoom(a.page, "Ada Lovelace");
  await joinRoom(b.page, "Grace Hopper");
  await a.page.waitForSelector('#presence li[data-name="Grace Hopper"]');
  await b.page.waitForSelector('#presence li[data-name="Ada Lovelace"]');
  assert.deepEqual(await names(a.page), ["Ada Lovelace", "Grace Hopper"]);
  assert.deepEqual(await names(b.page), ["Ada Lovelace", "Grace Hopper"]);

  // a blank comment is refused with the server's validation message
  await a.page.fill("#comment-input", "   ");
  await a.page.click("#comment-submit");
  await a.page.waitForSelector("#comment-error:has-text(\"can't be blank\")");

  // typed in A (WebSocket), appears in B (LongPoll), and the other way round
  const first = `Hello from Ada (topic …${id.slice(-4)}), déjà vu!`;
  await a.page.fill("#comment-input", first);
  await a.page.press("#comment-input", "Enter");
  await b.page.waitForSelector(`#comments li .content:text-is("${first}")`);
  await a.page.waitForSelector(`#comments li .content:text-is("${first}")`);
  assert.equal(await a.page.isHidden("#comment-error"), true, "the error went away");
  assert.equal(await a.page.inputValue("#comment-input"), "", "the form was cleared");

  const second = "Hi Ada! Replying over LongPoll.";
  await b.page.fill("#comment-input", second);
  await b.page.click("#comment-submit");
  await a.page.waitForSelector(`#comments li .content:text-is("${second}")`);
  await b.page.waitForSelector(`#comments li .content:text-is("${second}")`);
  assert.deepEqual(await comments(a.page), [first, second]);
  assert.deepEqual(await comments(b.page), [first, second]);

  // a third visitor reads both comments from the join reply
  const c = await visitor(`/#${id}`);
  await c.page.waitForSelector(`#comments li .content:text-is("${second}")`);
  assert.deepEqual(await comments(c.page), [first, second]);
  await c.page.context().close();

  // A drops its connection (the page's button): phoenix.js reconnects and
  // rejoins with its last position (comments:* keep history); a comment made
  // meanwhile reaches it once, whether recovered or live, and the page says
  // the rejoin recovered.
  await a.page.click("#drop");
  const third = "Made while Ada's connection dropped.";
  await b.page.fill("#comment-input", third);
  await b.page.click("#comment-submit");
  await a.page.waitForSelector("#recovery:has-text('missed comment(s) recovered')");
  await a.page.waitForSelector(`#comments li .content:text-is("${third}")`);
  await a.page.waitForTimeout(300); // a window for a duplicate to show up
  assert.deepEqual(await comments(a.page), [first, second, third]);
  assert.deepEqual(await comments(b.page), [first, second, third]);

  mkdirSync(ARTIFACTS, { recursive: true });
  await a.page.waitForTimeout(1300); // let the "new comment" highlight fade
  await a.page.screenshot({ path: join(ARTIFACTS, "demo.png"), fullPage: true });
  await b.page.screenshot({ path: join(ARTIFACTS, "demo-longpoll.png"), fullPage: true });

  assert.deepEqual(a.problems, [], "no errors in page A");
  // A closes its tab (its WebSocket closes at once): B's list shrinks to one.
  // (A LongPoll visitor that closes its tab is seen leaving only once its
  // session expires, 15 s later: LongPoll has no connection to close.)
  await a.page.context().close();
  await b.page.waitForFunction(() => document.querySelectorAll("#presence li").length === 1);
  assert.deepEqual(await names(b.page), ["Grace Hopper"]);
  assert.deepEqual(b.problems, [], "no errors in page B");
  await b.page.context().close();
});
