// Correct use of the generated discuss module: tsc accepts it (and
// typescript.test.mjs runs it against a live discuss).
import { Socket } from "phoenix";
import { ReplyError, typedChannel } from "./discuss.js";

/** What `run` saw, for the test to check. */
export type Seen = {
  joinedComments: string[];
  heard: string[];
  added: object;
  paged: string[];
  next: string | null;
  blank: string[] | undefined;
  echoed: unknown;
  shouted: { body: unknown; from: string };
  refused: string;
};

/** Drives discuss through the typed layer: comments and a room. */
export async function run(url: string, transport: new (endpoint: string) => object, id: string): Promise<Seen> {
  const socket = new Socket(url, { transport });
  socket.connect();
  try {
    const comments = typedChannel(socket, `comments:${id}`);
    const joined = await comments.join();
    const joinedComments = joined.comments.map((c) => c.content);

    const heard: string[] = [];
    const first = new Promise<void>((resolve) => {
      comments.on(`comments:${id}:new`, (event) => {
        heard.push(event.comment.content);
        resolve();
      });
    });
    const added = await comments.push("comment:add", { content: "typed hello" });
    await first;
    const page = await comments.push("comments:before", { limit: 1 });
    const paged = page.comments.map((c) => c.content);

    const outcome = await comments.pushOutcome("comment:add", { content: "   " });
    let blank: string[] | undefined;
    // The error is `StorageError | ValidationErrors`: only the second has `errors`.
    if (outcome.status === "error" && "errors" in outcome.response) {
      const content = outcome.response.errors["content"];
      blank = Array.isArray(content) && content.every((m) => typeof m === "string") ? (content as string[]) : undefined;
    }
    const echoed = await comments.push("ping", { any: ["thing", 1] });

    const room = typedChannel(socket, `room:typed-${id}`, { name: "ada" });
    await room.join();
    const shoutHeard = new Promise<{ body: unknown; from: string }>((resolve) => room.on("shout", resolve));
    await room.push("shout", { body: { text: "hi" } });
    const shouted = await shoutHeard;

    const nameless = typedChannel(socket, `room:typed-${id}`);
    let refused = "";
    try {
      await nameless.join();
    } catch (error) {
      if (error instanceof ReplyError) refused = JSON.stringify(error.response);
    }

    await comments.leave();
    await room.leave();
    return { joinedComments, heard, added, paged, next: page.next, blank, echoed, shouted, refused };
  } finally {
    socket.disconnect();
  }
}
