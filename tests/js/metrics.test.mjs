// GET /metrics: the runtime's figures in Prometheus's text format, scraped
// before and after a scripted phoenix.js session; every figure the session
// moves must have moved by exactly what it did.
import { test, afterEach } from "node:test";
import assert from "node:assert/strict";
import {
  T,
  HTTP_BASE,
  ADMIN_TOKEN,
  cleanupAll,
  commentsTopic,
  join,
  joinOk,
  nextEvent,
  openSocket,
  push,
  tryUpgrade,
  sleep,
  uid,
  waitUntil,
} from "./lib/helpers.mjs";

afterEach(cleanupAll);

/** Scrapes /metrics: `Map` of `name{labels}` → value (labels as written). */
async function scrape(token = ADMIN_TOKEN) {
  const res = await fetch(`${HTTP_BASE}/metrics`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  if (res.status !== 200) return { status: res.status };
  const text = await res.text();
  const series = new Map();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    series.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return { status: 200, text, series };
}

/** The value of a series (0 when absent: a counter not yet counted). */
const value = (scraped, key) => scraped.series.get(key) ?? 0;

test("GET /metrics needs the admin token", T, async () => {
  assert.equal((await scrape(null)).status, 401);
  assert.equal((await scrape("wrong")).status, 401);
  const ok = await scrape();
  assert.equal(ok.status, 200);
  assert.match(ok.text, /# TYPE channels_connections_accepted_total counter/);
  // The scheme is case-insensitive (RFC 7235 §2.1), as proxies and
  // clients may send it.
  for (const scheme of ["bearer", "BEARER"]) {
    const res = await fetch(`${HTTP_BASE}/metrics`, { headers: { authorization: `${scheme} ${ADMIN_TOKEN}` } });
    assert.equal(res.status, 200, `${scheme} ${res.status}`);
    await res.text();
  }
});

test("a scripted session moves every figure it touches by exactly what it did", T, async () => {
  const before = await scrape();
  assert.equal(before.status, 200);

  // Two refused connects: the app's `connect`, and a vsn nobody speaks.
  assert.deepEqual(await tryUpgrade({ token: "invalid", vsn: "2.0.0" }), { opened: false, status: 403 });
  assert.deepEqual(await tryUpgrade({ vsn: "9.9.9" }), { opened: false, status: 403 });

  const writer = await openSocket();
  const reader = await openSocket();
  const topic = commentsTopic();
  const wc = writer.channel(topic, {});
  const rc = reader.channel(topic, {});
  await joinOk(wc);
  await joinOk(rc);
  // Refused by the channel, and by the router (no channel for it).
  // (left at once: phoenix.js would rejoin a refused channel after 100 ms)
  for (const refused of [writer.channel("comments:not-a-number", {}), writer.channel(`nowhere:${uid()}`, {})]) {
    assert.equal((await join(refused)).status, "error");
    refused.leave();
  }

  const heard = nextEvent(rc, `${topic}:new`);
  assert.equal((await push(wc, "comment:add", { content: "counted" })).status, "ok");
  await heard;
  for (let i = 0; i < 3; i++) assert.equal((await push(wc, "ping", { i })).status, "ok");
  assert.equal((await push(wc, "no such event", {})).status, "error");

  const during = await scrape();
  assert.equal(value(during, "channels_connections_open") - value(before, "channels_connections_open"), 2);

  // A crash: the channel reports phx_error and phoenix.js rejoins it.
  const errored = new Promise((resolve) => wc.onError(resolve));
  wc.push("crash", {});
  await errored;
  await waitUntil(() => wc.state === "joined", 5000, "the crashed channel rejoined");

  writer.disconnect();
  reader.disconnect();
  let after = await scrape();
  for (const deadline = Date.now() + 5000; value(after, "channels_connections_open") !== value(before, "channels_connections_open"); ) {
    assert.ok(Date.now() < deadline, "the two connections closed within 5 s");
    await sleep(50);
    after = await scrape();
  }

  const delta = (key) => value(after, key) - value(before, key);
  const channel = 'channel="CommentsChannel"';
  assert.equal(delta("channels_connections_accepted_total"), 2);
  assert.equal(delta('channels_connections_refused_total{reason="connect"}'), 1);
  assert.equal(delta('channels_connections_refused_total{reason="vsn"}'), 1);
  // Two joins and the rejoin after the crash.
  assert.equal(delta(`channels_joins_total{${channel},outcome="ok"}`), 3);
  assert.equal(delta(`channels_joins_total{${channel},outcome="refused"}`), 1);
  assert.equal(delta('channels_joins_total{channel="none",outcome="refused"}'), 1);
  assert.equal(delta(`channels_join_duration_seconds_count{${channel}}`), 4);
  assert.equal(delta(`channels_handle_in_duration_seconds_count{${channel},event="comment:add"}`), 1);
  assert.equal(delta(`channels_handle_in_duration_seconds_count{${channel},event="ping"}`), 3);
  assert.equal(delta(`channels_handle_in_duration_seconds_count{${channel},event="crash"}`), 1);
  // An event the channel does not declare is `other`, never its own series.
  assert.equal(delta(`channels_handle_in_duration_seconds_count{${channel},event="other"}`), 1);
  assert.ok(![...after.series.keys()].some((k) => k.includes("no such event")), "a client's event name is no label");
  assert.equal(delta(`channels_crashes_total{${channel},callback="handle_in"}`), 1);
  // comment:add broadcast to both subscribers; one broadcast, two deliveries.
  assert.equal(delta("channels_broadcasts_total"), 1);
  assert.equal(delta("channels_deliveries_total"), 2);
  // Pushes and joins in; every join reply, reply, broadcast and phx_error out.
  assert.ok(delta("channels_messages_in_total") >= 11, `messages in: ${delta("channels_messages_in_total")}`);
  assert.ok(delta("channels_frames_out_total") >= 13, `frames out: ${delta("channels_frames_out_total")}`);
  assert.ok(delta("channels_bytes_out_total") > 0);
  assert.equal(value(after, "channels_channels_open"), value(before, "channels_channels_open"));
  assert.equal(value(after, "channels_outbound_queued_bytes"), 0, "nothing stays queued once the clients are gone");
  // A duration histogram, with the buckets discuss configures.
  assert.match(after.text, /channels_handle_in_duration_seconds_bucket\{channel="CommentsChannel",event="ping",le="0.0001"\}/);
});
