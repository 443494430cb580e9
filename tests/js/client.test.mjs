// The Rust client example (examples/client.rs) against the discuss server
// under test: it joins comments:42, prints the join reply, pushes
// comment:add, prints the comments:42:new broadcast and exits 0 — and a
// phoenix.js client in comments:42 sees that broadcast too.
//
// Needs the built example: cargo build --release --examples
// (CLIENT_BIN overrides the path). Fails, never skips, when it is missing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { URL, openSocket, joinOk, waitUntil } from "./lib/helpers.mjs";

const ROOT = fileURLToPath(new globalThis.URL("../..", import.meta.url));
const BIN = process.env.CLIENT_BIN || `${ROOT}target/release/examples/client`;

test("examples/client.rs joins, pushes and receives its broadcast, then exits 0", { timeout: 20_000 }, async () => {
  assert.ok(existsSync(BIN), `${BIN} is missing: cargo build --release --examples`);
  const socket = await openSocket();
  const chan = socket.channel("comments:42", {});
  await joinOk(chan);
  const seen = [];
  chan.on("comments:42:new", (payload) => seen.push(payload.comment.content));

  const { code, stdout, stderr } = await new Promise((resolve) => {
    execFile(BIN, [URL], { timeout: 15_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? (error.code ?? 1) : 0, stdout, stderr }),
    );
  });
  assert.equal(code, 0, `exit ${code}\nstdout:\n${stdout}\nstderr:\n${stderr}`);
  const lines = stdout.trim().split("\n");
  assert.match(lines[0], /^joined comments:42: hey "there", \d+ earlier comments$/);
  const content = lines[1].match(/^pushed comment:add "(.+)": ok$/)?.[1];
  assert.ok(content, stdout);
  assert.equal(lines.at(-1), `received comments:42:new "${content}"`);
  // phoenix.js in the same topic got the Rust client's comment
  await waitUntil(() => seen.includes(content), 5_000, "the Rust client's broadcast at phoenix.js");
  socket.disconnect();
});
