// The transport-independent phoenix.js cases (lib/cases.mjs) over WebSocket;
// longpoll.test.mjs runs the very same cases over LongPoll.
import { defineCases } from "./lib/cases.mjs";

defineCases("WebSocket", "websocket");
