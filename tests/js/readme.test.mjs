// The README's phoenix.js snippet for Node, run as a user would: copied out
// of README.md into a module of its own, pointed at the server under test,
// and run with plain `node`. It must connect, join, add a comment and log
// the broadcast of it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { T, URL, uid } from "./lib/helpers.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const README = path.join(HERE, "../../README.md");

/** The ```js block of README.md that passes `transport:` to the Socket. */
function nodeSnippet() {
  const blocks = [...readFileSync(README, "utf8").matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]);
  const found = blocks.filter((b) => b.includes("transport: WebSocket"));
  assert.equal(found.length, 1, "README.md has one phoenix.js snippet for Node (with `transport: WebSocket`)");
  return found[0];
}

/** Runs `source` as an ES module beside tests/js/node_modules; resolves with its output once `done` holds. */
function runUntil(source, done, ms = 5000) {
  const dir = path.join(HERE, "artifacts");
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `readme-snippet-${uid()}.mjs`);
  writeFileSync(file, source);
  const child = spawn(process.execPath, [file], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let timer;
  return new Promise((resolve, reject) => {
    child.stdout.on("data", (d) => {
      out += d;
      if (done(out)) resolve(out);
    });
    child.stderr.on("data", (d) => (out += d));
    child.on("exit", (code) => reject(new Error(`the snippet exited (${code}) before it was done:\n${out}`)));
    timer = setTimeout(() => reject(new Error(`the snippet was not done within ${ms} ms; it printed:\n${out}`)), ms);
  }).finally(() => {
    clearTimeout(timer);
    child.kill();
  });
}

test("the README's Node snippet connects with the ws transport, joins and sees its own comment", T, async () => {
  const topic = `comments:${uid()}`;
  const source = nodeSnippet()
    .replace("ws://127.0.0.1:4000/socket", URL)
    .replaceAll("comments:42", topic);
  assert.ok(source.includes(URL), "the snippet names the server's URL");
  const out = await runUntil(source, (o) => o.includes("new comment first!"));
  assert.match(out, /hey: 'there'/, `the join reply was logged: ${out}`);
});
