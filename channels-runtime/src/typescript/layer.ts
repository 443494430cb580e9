// ---------------------------------------------------------------------------
// The typed layer over phoenix.js: the same Socket and Channel, with event
// names, payloads and replies checked against the types above.

/** What a channel type above declares. */
export type ChannelSpec = {
  params: unknown;
  joined: unknown;
  refused: unknown;
  in: { [event: string]: { payload: unknown; reply: unknown; error: unknown } };
  out: { [event: string]: unknown };
};

/** The events a channel answers. */
export type InEvent<C extends ChannelSpec> = keyof C["in"] & string;
/** The events a channel pushes. */
export type OutEvent<C extends ChannelSpec> = keyof C["out"] & string;

/** How a push or join ended, with the response typed. */
export type Outcome<R, E> =
  | { status: "ok"; response: R }
  | { status: "error"; response: E }
  | { status: "timeout" };

/** A join or push answered `error` (or not at all: `timeout`). */
export class ReplyError<E = unknown> extends Error {
  constructor(
    readonly event: string,
    readonly status: "error" | "timeout",
    readonly response?: E,
  ) {
    super(status === "timeout" ? `${event}: no reply in time` : `${event}: error reply ${JSON.stringify(response)}`);
    this.name = "ReplyError";
  }
}

/**
 * What the server said of a (re)join on a topic with history (the `phx_recovery`
 * event): whether what the channel missed follows, and where it stands.
 */
export type RecoveryReport = {
  recovered: boolean;
  position: string | null;
  missed: number;
  /** Why not: "none" (first join), "invalid", "epoch", "expired", "future", "unavailable", "off", "declined". */
  reason?: string;
};

/** Whether the server keeps the history of `topic` (see `HISTORY_TOPICS`). */
export function keepsHistory(topic: string): boolean {
  return HISTORY_TOPICS.some((p) => (p.endsWith("*") ? topic.startsWith(p.slice(0, -1)) : topic === p));
}

/** A phoenix.js `Channel` whose events, payloads and replies are typed by `C`. */
export class TypedChannel<C extends ChannelSpec> {
  /** The phoenix.js channel underneath, for what this layer does not cover (`Presence`, say). */
  readonly channel: Channel;
  /**
   * On a topic with history: the position of the last broadcast handed to the app
   * (`"epoch:offset"`), which every rejoin sends, so the server sends what was
   * missed before anything live. Keep it to resume after a reload (`position` option).
   */
  position: string | null;
  private readonly recoveries: Array<(report: RecoveryReport) => void> = [];

  constructor(socket: Socket, topic: string, params?: C["params"], options?: { position?: string | null }) {
    this.position = options?.position ?? null;
    if (!keepsHistory(topic)) {
      this.channel = socket.channel(topic, (params ?? {}) as object);
      return;
    }
    // phoenix.js evaluates params before every (re)join when they are a function.
    const base = (params ?? {}) as object;
    this.channel = socket.channel(topic, () => ({ ...base, phx_position: this.position }));
    // Every event's ref: a position on a broadcast (or a push from handle_out) of
    // the topic, a plain number on replies; phx_recovery's is where the join starts.
    this.channel.onMessage = (event: string, payload: unknown, ref?: unknown) => {
      if (event === "phx_recovery") {
        this.position = typeof ref === "string" ? ref : null;
        for (const callback of this.recoveries) callback(payload as RecoveryReport);
      } else if (typeof ref === "string" && ref.includes(":")) {
        this.position = ref;
      }
      return payload;
    };
  }

  /**
   * Calls `callback` after every join on a topic with history: when `recovered` is
   * false (too much or too old missed, a new epoch) the app reloads its state; when
   * true, what was missed follows, in order, before anything live.
   */
  onRecovery(callback: (report: RecoveryReport) => void): void {
    this.recoveries.push(callback);
  }

  /** The topic. */
  get topic(): string {
    return this.channel.topic;
  }

  /** Joins: resolves with the join's response, rejects with a `ReplyError` (refused or timed out). */
  join(timeout?: number): Promise<C["joined"]> {
    return this.joinOutcome(timeout).then((outcome) => ok("phx_join", outcome));
  }

  /** Joins and resolves with how it ended, the refusal typed too. */
  joinOutcome(timeout?: number): Promise<Outcome<C["joined"], C["refused"]>> {
    return outcome(this.channel.join(timeout));
  }

  /** Pushes `event`: resolves with the ok response, rejects with a `ReplyError`. */
  push<E extends InEvent<C>>(event: E, payload: C["in"][E]["payload"], timeout?: number): Promise<C["in"][E]["reply"]> {
    return this.pushOutcome(event, payload, timeout).then((o) => ok(event, o));
  }

  /** Pushes `event` and resolves with how it ended, the error response typed too. */
  pushOutcome<E extends InEvent<C>>(
    event: E,
    payload: C["in"][E]["payload"],
    timeout?: number,
  ): Promise<Outcome<C["in"][E]["reply"], C["in"][E]["error"]>> {
    return outcome(this.channel.push(event, payload as object, timeout));
  }

  /** Calls `callback` with the payload of every `event` the server pushes; returns the ref `off` takes. */
  on<E extends OutEvent<C>>(event: E, callback: (payload: C["out"][E]) => void): number {
    return this.channel.on(event, callback as (payload: unknown) => void);
  }

  /** Stops calling the callbacks of `event` (only the one `on` returned `ref` for, if given). */
  off(event: OutEvent<C>, ref?: number): void {
    this.channel.off(event, ref);
  }

  /** Leaves the topic; resolves once the server confirmed (or the leave timed out). */
  leave(timeout?: number): Promise<void> {
    return new Promise((resolve) => {
      this.channel.leave(timeout).receive("ok", () => resolve()).receive("timeout", () => resolve());
    });
  }
}

/**
 * A typed channel for `topic` on `socket`: its type follows from the socket's routes.
 * On a topic with history it recovers by itself (`position` resumes from a kept one).
 */
export function typedChannel<T extends Topic>(
  socket: Socket,
  topic: T,
  params?: ChannelOf<T>["params"],
  options?: { position?: string | null },
): TypedChannel<ChannelOf<T>> {
  return new TypedChannel<ChannelOf<T>>(socket, topic, params, options);
}

function outcome<R, E>(push: Push): Promise<Outcome<R, E>> {
  return new Promise((resolve) => {
    push
      .receive("ok", (response: R) => resolve({ status: "ok", response }))
      .receive("error", (response: E) => resolve({ status: "error", response }))
      .receive("timeout", () => resolve({ status: "timeout" }));
  });
}

function ok<R, E>(event: string, outcome: Outcome<R, E>): R {
  switch (outcome.status) {
    case "ok":
      return outcome.response;
    case "error":
      throw new ReplyError<E>(event, "error", outcome.response);
    case "timeout":
      throw new ReplyError<E>(event, "timeout");
  }
}
