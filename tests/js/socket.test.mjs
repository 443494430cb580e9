// Socket level: forced disconnect by socket id, refused connects, malformed
// frames, heartbeats (V2 and V1).
import { test, afterEach } from "node:test";
import assert from "node:assert/strict";
import { T, cleanupAll, commentsTopic, joinOk, uid, RawClient, postDisconnect, tryUpgrade } from "./lib/helpers.mjs";

afterEach(cleanupAll);

test("POST /api/disconnect closes every socket of that user with 1001, others stay open", T, async () => {
  const user = `u-${uid()}`;
  const [a1, a2, b] = await Promise.all([
    RawClient.connect({ params: { user_id: user } }),
    RawClient.connect({ params: { user_id: user } }),
    RawClient.connect({ params: { user_id: `u-other-${uid()}` } }),
  ]);
  // joined channels must not keep a connection alive
  await Promise.all([a1, a2, b].map((c) => c.joinOk(commentsTopic())));

  // the admin route needs its token: without it, or with a wrong one, nothing closes
  assert.equal(await postDisconnect(`users_socket:${user}`, 3000, null), 401);
  assert.equal(await postDisconnect(`users_socket:${user}`, 3000, "wrong"), 401);
  assert.equal(a1.closed, null, "a refused admin call closes nothing");

  assert.equal(await postDisconnect(`users_socket:${user}`), 204);
  const [c1, c2] = await Promise.all([a1.waitClose(3000), a2.waitClose(3000)]);
  assert.equal(c1.code, 1001, `first socket of ${user} closed with ${c1.code}`);
  assert.equal(c2.code, 1001, `second socket of ${user} closed with ${c2.code}`);
  // closing the connection sends no phx_close / phx_error
  for (const c of [a1, a2]) assert.deepEqual(c.msgs((m) => m[3] === "phx_close" || m[3] === "phx_error"), []);

  assert.equal(b.closed, null, "the other user's socket stays open");
  const hb = await b.heartbeat();
  assert.deepEqual(hb, [null, hb[1], "phoenix", "phx_reply", { status: "ok", response: {} }]);

  // an id nobody has is still answered 204
  assert.equal(await postDisconnect(`users_socket:nobody-${uid()}`), 204);
});

test("connect refused: token=invalid and unsupported vsn are answered HTTP 403", T, async () => {
  assert.deepEqual(await tryUpgrade({ token: "invalid", vsn: "2.0.0" }), { opened: false, status: 403 });
  assert.deepEqual(await tryUpgrade({ vsn: "3.0.0" }), { opened: false, status: 403 });
  assert.deepEqual(await tryUpgrade({ vsn: "2.1.0" }), { opened: false, status: 403 });
  assert.deepEqual(await tryUpgrade({ vsn: "abc" }), { opened: false, status: 403 });
  // control: accepted ones open
  assert.deepEqual(await tryUpgrade({ token: "fine", vsn: "2.0.0" }), { opened: true });
  assert.deepEqual(await tryUpgrade({ vsn: "1.0.0" }), { opened: true });
  assert.deepEqual(await tryUpgrade({}), { opened: true });
});

test("a malformed text frame closes that connection with a non-1000 code; the server keeps serving", T, async () => {
  const bystander = await RawClient.connect();
  const btopic = commentsTopic();
  const bjr = await bystander.joinOk(btopic);

  const raw = await RawClient.connect();
  await raw.joinOk(commentsTopic());
  raw.send("this is not json");
  const { code } = await raw.waitClose(3000);
  assert.notEqual(code, 1000, "1000 would tell phoenix.js not to reconnect");
  assert.notEqual(code, 1006, "the server should send a close frame, not drop the TCP connection");

  // the bystander and new connections are fine
  const ping = await bystander.call(bjr, btopic, "ping", { ok: 1 });
  assert.equal(ping[4].status, "ok", JSON.stringify(ping));
  const fresh = await RawClient.connect();
  await fresh.joinOk(commentsTopic());
});

test("a V2 frame that is not a 5-element array closes the connection with a non-1000 code", T, async () => {
  for (const bad of ['["1","2"]', '{"topic":"phoenix"}']) {
    const raw = await RawClient.connect();
    raw.send(bad);
    const { code } = await raw.waitClose(3000);
    assert.notEqual(code, 1000, `${bad}: closed with 1000`);
  }
  const fresh = await RawClient.connect();
  assert.equal((await fresh.heartbeat())[4].status, "ok");
});

test("V2 heartbeat: exact reply frame, no join needed", T, async () => {
  const raw = await RawClient.connect();
  raw.send([null, "h1", "phoenix", "heartbeat", {}]);
  assert.deepEqual(await raw.waitReply("h1"), [null, "h1", "phoenix", "phx_reply", { status: "ok", response: {} }]);
  // and again, with a channel joined in between
  await raw.joinOk(commentsTopic());
  raw.send([null, "h2", "phoenix", "heartbeat", {}]);
  assert.deepEqual(await raw.waitReply("h2"), [null, "h2", "phoenix", "phx_reply", { status: "ok", response: {} }]);
});

test("no vsn param defaults to V1: heartbeat answered as a V1 object frame", T, async () => {
  const raw = await RawClient.connect({ vsn: null });
  raw.send({ topic: "phoenix", event: "heartbeat", payload: {}, ref: "1" });
  assert.deepEqual(await raw.waitReply("1"), {
    topic: "phoenix",
    event: "phx_reply",
    payload: { status: "ok", response: {} },
    ref: "1",
  });
  // a V1 join works on the same connection, replies have no join_ref key
  const topic = commentsTopic();
  raw.send({ topic, event: "phx_join", payload: {}, ref: "2", join_ref: "2" });
  const reply = await raw.waitReply("2");
  assert.deepEqual(reply, { topic, event: "phx_reply", payload: { status: "ok", response: { hey: "there", comments: [] } }, ref: "2" });
});
