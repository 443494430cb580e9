// A push of an event no handler takes: tsc must reject it.
import { Socket } from "phoenix";
import { typedChannel } from "./discuss.js";

const comments = typedChannel(new Socket("/socket"), "comments:1");
void comments.push("comment:ad", { content: "hi" });
