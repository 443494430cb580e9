// The discuss demo page: one phoenix.js socket, a `comments:N` channel for the
// topic on screen and, once the visitor gives a name, a `room:N` channel whose
// Presence lists who else is reading topic N.
//
// phoenix.js is the official client from npm, served by the example itself at
// /assets/phoenix.mjs (examples/web/node_modules/phoenix/priv/static).
import { Socket, Presence, LongPoll } from "/assets/phoenix.mjs";

const $ = (id) => document.getElementById(id);
const el = {
  status: $("status"),
  topicForm: $("topic-form"),
  topicInput: $("topic-input"),
  topicError: $("topic-error"),
  comments: $("comments"),
  commentsEmpty: $("comments-empty"),
  commentCount: $("comment-count"),
  commentForm: $("comment-form"),
  commentInput: $("comment-input"),
  commentSubmit: $("comment-submit"),
  commentError: $("comment-error"),
  roomForm: $("room-form"),
  nameInput: $("name-input"),
  roomError: $("room-error"),
  roomHint: $("room-hint"),
  presence: $("presence"),
  presenceCount: $("presence-count"),
  drop: $("drop"),
  recovery: $("recovery"),
};

// ?transport=longpoll forces LongPoll; otherwise WebSocket, falling back to
// LongPoll when it cannot open within 2.5 s (phoenix.js remembers the
// fallback for the rest of the browser session).
const forceLongPoll = new URLSearchParams(location.search).get("transport") === "longpoll";
const socket = new Socket("/socket", forceLongPoll ? { transport: LongPoll } : { longPollFallbackMs: 2500 });

const transportName = () => (socket.transport === LongPoll ? "LongPoll" : "WebSocket");
function setStatus(state, text) {
  el.status.dataset.state = state;
  el.status.textContent = text;
  document.body.dataset.connection = state;
}
socket.onOpen(() => {
  document.body.dataset.transport = transportName();
  setStatus("open", `connected · ${transportName()}`);
});
socket.onError(() => setStatus("error", "connection lost · retrying"));
socket.onClose(() => {
  if (el.status.dataset.state === "open") setStatus("error", "disconnected · retrying");
});
socket.connect();

// ------------------------------------------------------------------ helpers

function showError(node, text) {
  node.textContent = text || "";
  node.hidden = !text;
}

function initials(name) {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  return (parts.length > 1 ? parts[0][0] + parts[1][0] : name.trim().slice(0, 2)).toUpperCase();
}

/** A stable hue per name, so each person keeps a colour across tabs. */
function hue(name) {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

function timeOf(unixSeconds) {
  const n = Number(unixSeconds);
  if (!Number.isFinite(n) || n <= 0) return "";
  return new Date(n * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// ------------------------------------------------------------------ comments

let topicId = null;
let commentsChannel = null;
let commentTotal = 0;

function renderCount() {
  el.commentCount.textContent = topicId === null ? "—" : `${commentTotal}`;
  el.commentsEmpty.hidden = commentTotal > 0;
  if (topicId !== null && commentTotal === 0) el.commentsEmpty.textContent = "No comments yet. Be the first!";
}

function appendComment(comment, { fresh = false } = {}) {
  commentTotal += 1;
  const li = document.createElement("li");
  li.className = fresh ? "comment fresh" : "comment";
  const num = document.createElement("span");
  num.className = "num";
  num.textContent = `#${commentTotal}`;
  const body = document.createElement("p");
  body.className = "content";
  body.textContent = comment.content;
  li.append(num, body);
  el.comments.append(li);
  renderCount();
  if (fresh) li.scrollIntoView({ block: "nearest" });
}

function setComposerEnabled(on) {
  el.commentInput.disabled = !on;
  el.commentSubmit.disabled = !on;
}

function showRecovery(text) {
  el.recovery.textContent = text;
  el.recovery.hidden = !text;
}

// Drops the connection as a network would (not a clean disconnect):
// phoenix.js reconnects and rejoins by itself.
el.drop.addEventListener("click", () => {
  if (socket.conn) socket.conn.close(4000, "dropped by the demo page");
});

function openTopic(id) {
  if (id === topicId) return;
  if (commentsChannel) commentsChannel.leave();
  topicId = id;
  commentTotal = 0;
  el.comments.replaceChildren();
  showError(el.topicError, "");
  showError(el.commentError, "");
  showRecovery("");
  el.commentsEmpty.textContent = "Loading…";
  el.commentsEmpty.hidden = false;
  document.title = `comments:${id} · Discuss`;
  if (location.hash !== `#${id}`) history.replaceState(null, "", `#${id}`);

  // `comments:*` keep history (docs/recovery.md): the join params are a
  // function, so every rejoin sends the last position seen, and the server
  // sends what was missed, or says it cannot.
  let position = null;
  let listed = null; // the join reply's comments, shown unless recovered
  let rejoined = false;
  const channel = socket.channel(`comments:${id}`, () => ({ phx_position: position }));
  commentsChannel = channel;
  channel.on(`comments:${id}:new`, ({ comment }, ref) => {
    if (ref) position = ref; // the broadcast's position
    appendComment(comment, { fresh: true });
  });
  channel.on("phx_recovery", (report, ref) => {
    if (channel !== commentsChannel) return;
    position = ref;
    if (report.recovered) {
      // the list stays; the `missed` comments follow, before anything live
      showRecovery(rejoined ? `Reconnected: ${report.missed} missed comment(s) recovered.` : "");
    } else {
      // a first join, or what was missed is gone: start over from the reply
      commentTotal = 0;
      el.comments.replaceChildren();
      (listed || []).forEach((c) => appendComment(c));
      renderCount();
      showRecovery(rejoined ? `Reconnected: not recovered (${report.reason}); the list was reloaded.` : "");
    }
    rejoined = true;
  });
  channel
    .join()
    // Runs again after every rejoin (reconnect, crash); phx_recovery, right
    // after it, says whether to keep the list or start over from it.
    .receive("ok", ({ comments }) => {
      if (channel !== commentsChannel) return;
      listed = comments;
      setComposerEnabled(true);
    })
    .receive("error", ({ reason }) => {
      showError(el.topicError, `Cannot open comments:${id}: ${reason}`);
      setComposerEnabled(false);
    });
  joinRoom();
}

el.topicForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const id = el.topicInput.value.trim();
  if (!/^\d+$/.test(id)) {
    showError(el.topicError, "A topic is a number, e.g. 42.");
    return;
  }
  openTopic(id);
});

function sendComment() {
  if (!commentsChannel) return;
  const content = el.commentInput.value;
  commentsChannel
    .push("comment:add", { content })
    .receive("ok", () => {
      el.commentInput.value = "";
      showError(el.commentError, "");
    })
    .receive("error", ({ errors, reason }) => {
      const msgs = errors ? Object.entries(errors).map(([field, list]) => `${field} ${list.join(", ")}`) : [reason];
      showError(el.commentError, msgs.join("; "));
    })
    .receive("timeout", () => showError(el.commentError, "No answer from the server; try again."));
  el.commentInput.focus();
}

el.commentForm.addEventListener("submit", (e) => {
  e.preventDefault();
  sendComment();
});
el.commentInput.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    sendComment();
  }
});
el.commentInput.addEventListener("input", () => showError(el.commentError, ""));

// ------------------------------------------------------------------ presence

let myName = "";
let roomChannel = null;

function renderPresence(presence) {
  const people = presence.list((name, { metas }) => ({ name, tabs: metas.length, since: metas[0] && metas[0].online_at }));
  people.sort((a, b) => a.name.localeCompare(b.name));
  el.presence.replaceChildren(
    ...people.map(({ name, tabs, since }) => {
      const li = document.createElement("li");
      li.className = "person";
      li.dataset.name = name;
      const avatar = document.createElement("span");
      avatar.className = "avatar";
      avatar.style.setProperty("--hue", hue(name));
      avatar.textContent = initials(name);
      const who = document.createElement("span");
      who.className = "who";
      const strong = document.createElement("strong");
      strong.textContent = name;
      who.append(strong);
      if (name === myName) {
        const you = document.createElement("span");
        you.className = "you";
        you.textContent = "you";
        who.append(you);
      }
      const meta = document.createElement("small");
      const at = timeOf(since);
      meta.textContent = [at && `here since ${at}`, tabs > 1 && `${tabs} tabs`].filter(Boolean).join(" · ");
      li.append(avatar, who, meta);
      return li;
    }),
  );
  el.presenceCount.textContent = `${people.length} online`;
  el.roomHint.hidden = people.length > 0;
}

function joinRoom() {
  if (roomChannel) {
    roomChannel.leave();
    roomChannel = null;
  }
  el.presence.replaceChildren();
  el.presenceCount.textContent = "—";
  if (!myName || topicId === null) {
    el.roomHint.hidden = false;
    el.roomHint.textContent = myName ? "Open a topic to join its room." : "Pick a topic and a name to show up here.";
    return;
  }
  el.roomHint.textContent = `Joining room:${topicId}…`;
  const channel = socket.channel(`room:${topicId}`, { name: myName });
  roomChannel = channel;
  const presence = new Presence(channel);
  presence.onSync(() => {
    if (channel === roomChannel) renderPresence(presence);
  });
  channel
    .join()
    .receive("ok", () => showError(el.roomError, ""))
    .receive("error", ({ reason }) => showError(el.roomError, `Cannot join room:${topicId}: ${reason}`));
}

el.roomForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const name = el.nameInput.value.trim();
  if (!name) {
    showError(el.roomError, "Enter a name first.");
    return;
  }
  showError(el.roomError, "");
  if (name === myName && roomChannel) return;
  myName = name;
  joinRoom();
});

// ------------------------------------------------------------------ start

// /#42 opens topic 42 (the address of a topic can be shared).
const fromHash = location.hash.replace(/^#/, "");
if (/^\d+$/.test(fromHash)) {
  el.topicInput.value = fromHash;
  openTopic(fromHash);
} else {
  renderCount();
}
