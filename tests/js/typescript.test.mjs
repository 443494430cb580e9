// The TypeScript module discuss generates (`discuss typescript FILE`,
// committed as ts/discuss.ts): it is up to date, the pinned tsc accepts a
// correct use of it and rejects a wrong event name, a wrong payload field
// and a wrong reply field with the errors a person would expect, and the
// correct use, compiled, drives the running discuss.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { T, URL, WebSocket, uid } from "./lib/helpers.mjs";

const run = promisify(execFile);
const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");
const BIN = process.env.DISCUSS_BIN || path.join(ROOT, "target/release/examples/discuss");
const TSC = path.join(HERE, "node_modules/typescript/bin/tsc");
const TS = path.join(HERE, "ts");
/** Where the compiled module goes: under tests/js, so `phoenix` resolves from its node_modules. */
const OUT = path.join(HERE, "artifacts/typescript");
const FLAGS = ["--strict", "--target", "es2022", "--module", "nodenext", "--moduleResolution", "nodenext", "--types", "phoenix"];

/** Runs the pinned tsc; resolves its exit code and output whether it passed or not. */
async function tsc(...args) {
  try {
    const { stdout } = await run(process.execPath, [TSC, ...FLAGS, ...args], { cwd: HERE });
    return { code: 0, output: stdout };
  } catch (error) {
    if (typeof error.code !== "number") throw error;
    return { code: error.code, output: `${error.stdout}${error.stderr}` };
  }
}

test("ts/discuss.ts is what `discuss typescript` writes now", T, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "discuss-ts-"));
  try {
    const file = path.join(dir, "discuss.ts");
    await run(BIN, ["typescript", "--strict", file]);
    assert.equal(
      readFileSync(file, "utf8"),
      readFileSync(path.join(TS, "discuss.ts"), "utf8"),
      "stale: run `cargo run --example discuss -- typescript --strict tests/js/ts/discuss.ts`",
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("tsc rejects a wrong event name, payload field and reply field, each with its own error", T, async () => {
  const cases = {
    "wrong-event.ts": /\(6,20\): error TS2345: Argument of type '"comment:ad"' is not assignable to parameter of type 'InEvent<CommentsChannel>'/,
    "wrong-payload-field.ts":
      /\(6,37\): error TS2561: Object literal may only specify known properties, but 'contnet' does not exist in type 'NewComment'\. Did you mean to write 'content'\?/,
    "wrong-reply-field.ts": /\(6,80\): error TS2551: Property 'contnet' does not exist on type 'Comment'\. Did you mean 'content'\?/,
  };
  const files = Object.keys(cases);
  const { code, output } = await tsc("--noEmit", ...files.map((f) => path.join("ts", f)));
  assert.equal(code, 2, `tsc exits 2 on type errors:\n${output}`);
  const errors = output.split("\n").filter((line) => line.includes("error TS"));
  for (const [file, expected] of Object.entries(cases)) {
    const mine = errors.filter((line) => line.startsWith(`ts/${file}(`));
    assert.equal(mine.length, 1, `one error in ${file}:\n${output}`);
    assert.match(mine[0], expected);
  }
  assert.equal(errors.length, files.length, output);
});

test("a correct use type-checks and, compiled, drives discuss through the typed layer", T, async () => {
  rmSync(OUT, { recursive: true, force: true });
  mkdirSync(OUT, { recursive: true });
  const { code, output } = await tsc("--outDir", OUT, path.join("ts", "usage.ts"));
  assert.equal(code, 0, `tsc accepts ts/usage.ts:\n${output}`);
  assert.equal(output, "");

  const { run: drive } = await import(pathToFileURL(path.join(OUT, "usage.js")).href);
  const seen = await drive(URL, WebSocket, uid());
  assert.deepEqual(seen, {
    joinedComments: [],
    heard: ["typed hello"],
    added: {},
    paged: ["typed hello"],
    next: null,
    blank: ["can't be blank"],
    echoed: { any: ["thing", 1] },
    shouted: { body: { text: "hi" }, from: "ada" },
    refused: JSON.stringify({ reason: "name required" }),
  });
});
