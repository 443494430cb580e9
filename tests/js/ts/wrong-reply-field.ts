// A reply field the reply's type does not have: tsc must reject it.
import { Socket } from "phoenix";
import { typedChannel } from "./discuss.js";

const comments = typedChannel(new Socket("/socket"), "comments:1");
void comments.join().then((joined) => joined.comments.map((comment) => comment.contnet));
