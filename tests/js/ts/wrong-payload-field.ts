// A payload field the event's type does not have: tsc must reject it.
import { Socket } from "phoenix";
import { typedChannel } from "./discuss.js";

const comments = typedChannel(new Socket("/socket"), "comments:1");
void comments.push("comment:add", { contnet: "hi" });
