// @ts-check
/**
 * openline.js — the browser client of the openline hub (subprotocol `openline.v1`).
 *
 * A plain ES module: no build step, no dependencies, types in JSDoc. It behaves
 * like the Python client (`openline.hub.Client`):
 *
 * - Follows **`POLICY`**, a literal copy of `src/openline/hub/policy.json`,
 *   the table the Python client reads too.
 * - **Redials** after 0.5–1 s, then 1–2 s, then 1.5–3 s (jittered, capped),
 *   restarting the backoff once a connection lasted `resetAfter` seconds. Close
 *   codes 1000, 1001, 1005, 1006, 1011, 1012, 1013 and 1014 redial; any other
 *   code stops the client (1008 abuse, 1009 too big...: `stopped`). After 1001,
 *   1012 or 1013 a close reason `retry-after=S` (a draining hub's retry hint)
 *   makes the first redial wait at least `S` seconds. A browser
 *   can't see why a handshake failed (a 401 looks like a network error), so
 *   failed handshakes redial with backoff too.
 * - **Tells the truth within a second**: on the browser's `offline` event it
 *   gives the connection up, says `offline` at once and dials nothing until
 *   `online`, which dials at once with the backoff started over.
 * - **Paces** every message it sends to the rate the hub announces in its
 *   welcome (`limits.rate`, `limits.burst`), so flushing a long queue after a
 *   redial never trips the hub's limits; after a refusal worth a retry
 *   (`rate_limited`, `unavailable`, `internal`) it waits (`retry_after`, or
 *   the backoff) and resends the unacknowledged publishes in their order.
 * - **Settles every publish**: its promise resolves with the ack, or rejects
 *   (`too_large` before sending, a refusal of the hub, or the error that
 *   stopped the client); a publish refused for good is never sent again.
 * - **Detects a dead line** with the protocol's own heartbeat: browsers can't
 *   send WebSocket pings, so it sends `{"type":"ping"}` every `heartbeatInterval`
 *   seconds and gives the connection up when nothing at all arrived within
 *   `heartbeatTimeout` seconds of a ping. Deadlines are measured from the time
 *   the ping actually went out and the time the last message actually arrived,
 *   never from timers firing on time: background tabs throttle timers (to once a
 *   minute), so a check that runs late sends a fresh probe before it judges.
 *   When the page comes back (`visibilitychange`, `online`, `pageshow`,
 *   `resume`), the client redials at once if it was waiting to, or probes the
 *   open line with a short deadline.
 * - **Resumes** every subscription after a redial from its last `(epoch, offset)`,
 *   drops messages it has seen (by offset), and reports a `gap` event exactly
 *   where history fell short — never a silent hole.
 * - **Queues publishes** while offline, in order, each with a unique client
 *   message id, so the hub stores a retried publish once; at most `maxQueue`
 *   publishes wait for their ack, further `publish()` calls wait for room.
 * - Keeps **presence** (members, with their ephemeral state such as typing,
 *   expired after its `ttl` even if the hub's expiry is lost).
 *
 * ```js
 * import { Client } from "/openline.js";
 * const client = new Client("/ws", { token: "ada" });
 * client.on("reconnecting", ({ delay }) => show(`reconnecting in ${delay.toFixed(1)} s`));
 * client.on("resumed", ({ ch, recovered }) => show(`${recovered} missed messages recovered`));
 * const room = client.subscribe("room:1", { presence: true, history: true });
 * room.on("message", (m) => append(m.data));
 * client.start();
 * await client.publish("room:1", { text: "hello" });   // resolves with the ack
 * ```
 *
 * Events of a `Client` (details in `ClientEvents`): `statechange`,
 * `connected`, `disconnected`, `reconnecting`, `offline`, `online`, `resumed`,
 * `gap`, `publish-failed`, `stopped`, `error`, `server-subscribed`,
 * `server-unsubscribed`. Events of a `Subscription`:
 * `subscribed`, `message`, `gap`, `presence`, `join`, `leave`, `state`.
 * Listen with `on(type, listener)` (the listener gets the event's detail; the
 * call returns a function that removes it) or with `addEventListener`
 * (a `CustomEvent` whose `detail` is the same object).
 *
 * The wire protocol is specified in `docs/protocol.md` of the openline project.
 *
 * @module openline
 */

/** The subprotocol of the hub's wire protocol. */
export const SUBPROTOCOL = "openline.v1";
/** Prefix of the subprotocol offer that carries a token (browsers can't set headers). */
export const TOKEN_PREFIX = "openline.token.";
/** Longest client message id, in characters. */
export const MAX_ID_LENGTH = 128;

/**
 * How this client redials, which refusals it retries and how it paces itself: a
 * literal copy of `src/openline/hub/policy.json` (without its comment), the table
 * the Python client reads too. A test loads both and checks they are equal.
 */
export const POLICY = deepFreeze({
  backoff: { first: [0.5, 1.0], base: 1.0, factor: 2.0, cap: 3.0, jitter: 0.5, reset_after: 5.0 },
  redial_close_codes: [1000, 1001, 1005, 1006, 1011, 1012, 1013, 1014],
  token_close_codes: [4001],
  retry_hint_close_codes: [1001, 1012, 1013],
  redial_statuses: [408, 425, 429, 500, 502, 503, 504],
  retry_errors: ["rate_limited", "unavailable", "internal"],
  pacing: { rate_share: 0.9, burst_share: 0.5 },
  heartbeat: { interval: 10.0, timeout: 10.0 },
});

/** Close codes after which redialling is worth it; any other one stops the client. */
const RETRY_CLOSE_CODES = new Set([...POLICY.redial_close_codes, ...POLICY.token_close_codes]);
/** Close codes whose reason may carry a retry hint (`retry-after=1.25`). */
const RETRY_HINT_CLOSE_CODES = new Set(POLICY.retry_hint_close_codes);
/** Largest retry hint honoured, in seconds, as in the Python client. */
const MAX_RETRY_HINT = 300;
/** Error codes after which a request is worth sending again: the hub didn't process it. */
const RETRY_CODES = new Set(POLICY.retry_errors);
/** Message types that belong to a subscription. */
const CHANNEL_TYPES = new Set(["message", "gap", "subscribed", "presence", "join", "leave", "state"]);
/**
 * The position sent to ask for "everything history still holds": an epoch no
 * channel has. The protocol answers an unknown epoch with a gap, then every
 * message still in history; the client doesn't report that gap (nothing was lost).
 */
const HISTORY_EPOCH = "openline.history";
/** A timer that fires this much later than asked was throttled or frozen (ms). */
const LATE_MS = 2500;
/** The deadline of a probe sent when the page comes back, at most (s). */
const PROBE_TIMEOUT = 5;
/** Seconds a state from a presence snapshot lives unless renewed (the hub's default ttl). */
const SNAPSHOT_STATE_TTL = 5;
const PING = '{"type":"ping"}';

// --- types ---------------------------------------------------------------------------

/**
 * @typedef {object} ClientOptions
 * @property {string | (() => string | null | Promise<string | null>) | null} [token]
 *   Sent as the subprotocol offer `openline.token.<token>`; a function (plain or
 *   async) is called before every dial, and when the hub asks for a new token
 *   (`refresh`, before the current one expires): the new one then goes out in a
 *   `token` message, without reconnecting. A connection closed with 4001 (token
 *   expired) is redialled with a new token. Must be made of HTTP token characters
 *   (use base64url; JWTs are). `null` sends none.
 * @property {number} [backoffBase] Replaces `POLICY.backoff.base` (1 s): the
 *   first redial waits 0.5–1 × `backoffBase`, later ones grow from it by `factor`.
 * @property {number} [backoffCap] Replaces `POLICY.backoff.cap` (3 s): no redial
 *   waits longer (unless `backoff` says otherwise).
 * @property {(attempt: number) => number} [backoff] Replaces the default backoff:
 *   the delay in seconds before redial number `attempt` (from 1, since the backoff
 *   last started over). Return `null` or a negative number to stop redialling.
 * @property {number | null} [maxAttempts] Most dials in a row without a healthy
 *   connection; then the client stops. `null` redials forever (the default).
 * @property {number | null} [resetAfter] Seconds a connection must last before
 *   the backoff starts over (5); `null` starts it over at every connection.
 * @property {number | null} [heartbeatInterval] Seconds between two pings (10);
 *   `null` disables the heartbeat.
 * @property {number | null} [heartbeatTimeout] Seconds to hear anything after a
 *   ping before giving the line up (10); also the time allowed to open a
 *   connection and get the hub's welcome. `null` waits forever.
 * @property {number | null} [maxQueue] Publishes waiting for their ack, offline
 *   or not (1000); more `publish()` calls wait for room. `null` disables the bound.
 * @property {boolean} [watchPage] Listen to the page's visibility and network
 *   events to check the line at once when the page comes back (true in browsers).
 * @property {typeof WebSocket} [WebSocket] The WebSocket class, for tests or
 *   other environments; the global one by default.
 */

/**
 * @typedef {"idle" | "connecting" | "open" | "reconnecting" | "offline" | "closed"} ClientState
 * `idle` before `start()`; `connecting` while dialling; `open` once welcomed;
 * `reconnecting` while waiting to redial; `offline` while the browser says it
 * has no network (no dial happens until it is back); `closed` after `close()`
 * or a stop.
 */

/**
 * @typedef {object} Publication A message published on a channel.
 * @property {string} ch The channel.
 * @property {string} epoch The channel's epoch.
 * @property {number} offset The message's offset: one more than the previous one's.
 * @property {any} data The payload.
 * @property {string} [id] The publisher's client message id.
 * @property {string} [user] The publisher's user id.
 * @property {boolean} replayed Whether it came from history when (re)subscribing.
 */

/**
 * @typedef {object} Gap Messages were lost: history didn't reach back far enough.
 * The messages after `since` and before `first` in `epoch` will never arrive.
 * @property {string} ch
 * @property {string} epoch The epoch delivery continues in.
 * @property {[string, number] | null} since The last position the client had.
 * @property {number} first The offset of the next message delivered.
 */

/**
 * @typedef {object} Member A user present in a channel.
 * @property {string} user
 * @property {Record<string, any>} info The user's public info (e.g. `name`).
 * @property {number} clients How many of the user's connections are in the channel.
 * @property {any} state Ephemeral state (e.g. `{typing: true}`), or `null`.
 */

/**
 * @typedef {object} Presence A presence snapshot.
 * @property {string} ch
 * @property {number} count Distinct users present.
 * @property {Map<string, Member> | null} members `null` for a counts-only channel.
 */

/**
 * @typedef {object} Ack The hub stored a publish.
 * @property {string} ch
 * @property {string} epoch
 * @property {number} offset Where it landed; for a duplicate, the original's.
 * @property {string} id The client message id.
 * @property {boolean} duplicate The hub had stored this id already (a retry).
 */

/**
 * @typedef {object} SubscribeOptions
 * @property {boolean} [presence] Receive presence snapshots and events.
 * @property {[string, number] | null} [since] Resume after this `(epoch, offset)`.
 * @property {boolean} [history] Start with every message history still holds
 *   (ignored with `since`).
 */

/**
 * A publish waiting for its ack. `sent`: written on the current connection;
 * `held`: sent after a publish the hub refused with a code worth a retry, so
 * the hub refuses it too (expected, not acted upon).
 * @typedef {{ch: string, id: string, rid: string, text: string, size: number,
 *   sent: boolean, held: boolean,
 *   resolve: (ack: Ack) => void, reject: (error: Error) => void}} Outgoing
 */

// --- errors --------------------------------------------------------------------------

/** The hub refused a request, or the client stopped because of the hub. */
export class HubError extends Error {
  /**
   * @param {string} code The protocol's error code (`forbidden`, `too_large`...), or
   *   `closed` for a connection closed with a code that forbids redialling.
   * @param {string} reason For humans.
   * @param {{rid?: any, ch?: string, id?: string, closeCode?: number}} [details]
   */
  constructor(code, reason, details = {}) {
    super(`${code}: ${reason}`);
    this.name = "HubError";
    this.code = code;
    this.reason = reason;
    this.rid = details.rid;
    this.ch = details.ch;
    this.id = details.id;
    this.closeCode = details.closeCode;
  }
}

/** The client was closed, or the subscription ended: the call can't complete. */
export class ClientClosed extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "ClientClosed";
  }
}

// --- helpers -------------------------------------------------------------------------

/** Monotonic milliseconds. */
const now = () => performance.now();

/** @param {number} bytes */
function randomId(bytes = 9) {
  const raw = crypto.getRandomValues(new Uint8Array(bytes));
  let text = "";
  for (const byte of raw) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * Encode a request as JSON; NaN and infinities are refused, as the hub would.
 * @param {Record<string, any>} fields
 */
function encode(fields) {
  return JSON.stringify(fields, (_key, value) => {
    if (typeof value === "number" && !Number.isFinite(value)) {
      throw new RangeError(`JSON can't carry ${value}`);
    }
    return value;
  });
}

/**
 * The delay in seconds before redial number `attempt` (from 1, counted since the
 * last healthy connection), as `policy.json` says: the first is drawn from
 * `first` (0.5–1 s); the n-th from `[c × (1 − jitter), c]` with
 * `c = min(cap, base × factor^(n−1))` (1–2 s, then 1.5–3 s). Jittered, so that a
 * crowd of pages cut at once doesn't redial at once; short, so that a page is
 * back soon after its server.
 * @param {number} attempt
 * @param {{first: readonly number[], base: number, factor: number, cap: number, jitter: number}} [backoff]
 * @param {() => number} [random] A source of numbers in [0, 1).
 */
export function redialDelay(attempt, backoff = POLICY.backoff, random = Math.random) {
  const [low, high] = backoff.first;
  if (attempt <= 1) return low + random() * (high - low);
  const ceiling = Math.min(backoff.cap, backoff.base * backoff.factor ** Math.min(attempt - 1, 1000));
  return ceiling * (1 - backoff.jitter) + random() * ceiling * backoff.jitter;
}

/**
 * The retry hint of a close reason (`retry-after=1.25`, optionally followed by
 * a space, `;` or `,` and free text), in seconds, at most 300; `null` if none.
 * docs/protocol.md, "The retry hint".
 * @param {string} reason
 * @returns {number | null}
 */
export function parseRetryHint(reason) {
  const match = /^retry-after=(\d{1,6}(?:\.\d{1,6})?)(?:[ ;,][\s\S]*)?$/.exec(reason || "");
  return match === null ? null : Math.min(Number(match[1]), MAX_RETRY_HINT);
}

/**
 * @template T
 * @param {T} value
 * @returns {T}
 */
function deepFreeze(value) {
  if (value !== null && typeof value === "object") {
    for (const item of Object.values(value)) deepFreeze(item);
    Object.freeze(value);
  }
  return value;
}

/** @param {string} text */
function utf8Length(text) {
  return new TextEncoder().encode(text).length;
}

/**
 * An EventTarget whose events carry their payload in `detail`, with `on()`.
 * @template {Record<string, any>} EventMap
 */
class Emitter extends EventTarget {
  /**
   * Call `listener` with the detail of every `type` event; returns a function that stops it.
   * @template {keyof EventMap & string} K
   * @param {K} type
   * @param {(detail: EventMap[K]) => void} listener
   * @returns {() => void}
   */
  on(type, listener) {
    /** @param {Event} event */
    const wrapped = (event) => listener(/** @type {CustomEvent} */ (event).detail);
    this.addEventListener(type, wrapped);
    return () => this.removeEventListener(type, wrapped);
  }

  /**
   * @template {keyof EventMap & string} K
   * @param {K} type
   * @param {EventMap[K]} detail
   */
  emit(type, detail) {
    try {
      this.dispatchEvent(new CustomEvent(type, { detail }));
    } catch (error) {
      // A listener's exception mustn't break the client's bookkeeping.
      reportError(error);
    }
  }
}

/** @param {unknown} error */
function reportError(error) {
  if (typeof globalThis.reportError === "function") globalThis.reportError(error);
  else console.error(error);
}

// --- Subscription --------------------------------------------------------------------

/**
 * @typedef {object} SubscriptionEvents
 * @property {{ch: string, epoch: string, offset: number, recovered: boolean,
 *   missed: number, resumed: boolean}} subscribed The hub confirmed the
 *   subscription (again, after each redial: then `resumed` is true).
 * @property {Publication} message
 * @property {Gap} gap
 * @property {Presence} presence
 * @property {{ch: string, user: string, info: Record<string, any>}} join
 * @property {{ch: string, user: string}} leave
 * @property {{ch: string, user: string, state: any, ttl: number | null,
 *   expired: boolean}} state
 */

/**
 * A channel the client subscribed to.
 * @extends {Emitter<SubscriptionEvents>}
 */
export class Subscription extends Emitter {
  /**
   * @param {Client} client
   * @param {string} ch
   * @param {SubscribeOptions} options
   */
  constructor(client, ch, options) {
    super();
    /** The channel. */
    this.ch = ch;
    /** Whether presence snapshots and events are delivered. */
    this.presence = Boolean(options.presence);
    /** @type {Map<string, Member>} Who is in the channel (with `presence`). */
    this.members = new Map();
    /** How many distinct users are present (with `presence`; counts-only channels too). */
    this.count = 0;
    /** Messages received again and dropped. */
    this.duplicates = 0;
    this._client = client;
    const since = options.since ?? null;
    /** @type {string | null} */
    this._epoch = since ? since[0] : null;
    this._offset = since ? since[1] : 0;
    this._history = !since && Boolean(options.history);
    /** The subscribe request in flight on this connection, if any. @type {string | null} */
    this.rid = null;
    /** @type {[string, number] | null} */
    this._sinceSent = null;
    this._gapSeen = false;
    this._replayLeft = 0;
    /** Whether the hub answered the subscribe of this connection. */
    this.answered = false;
    this.confirmed = false;
    this.ended = false;
    /** @type {Map<string, ReturnType<typeof setTimeout>>} */
    this._expiry = new Map();
    /** @type {(value: Subscription) => void} */
    let resolve = () => {};
    /** @type {(error: Error) => void} */
    let reject = () => {};
    /** Resolves once the hub confirmed the subscription; rejects if it refused. */
    this.ready = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.ready.catch(() => {}); // a refusal also arrives as the client's "error" event
    this._resolve = resolve;
    this._reject = reject;
  }

  /**
   * The `(epoch, offset)` of the last message received, or `null` before any:
   * keep it to resume later with `subscribe(ch, {since: position})`.
   * @returns {[string, number] | null}
   */
  get position() {
    return this._epoch === null ? null : [this._epoch, this._offset];
  }

  /** Leave the channel. */
  unsubscribe() {
    this._client.unsubscribe(this.ch);
  }

  // --- driven by the client ----------------------------------------------------------

  /**
   * Build the subscribe request for a (new) connection, resuming from the position.
   * @param {string} rid
   */
  request(rid) {
    this.rid = rid;
    this.answered = false;
    let since = this.position;
    if (since === null && this._history) since = [HISTORY_EPOCH, 0];
    this._sinceSent = since;
    this._gapSeen = false;
    /** @type {Record<string, any>} */
    const request = { type: "subscribe", ch: this.ch, rid };
    if (since) request.since = { epoch: since[0], offset: since[1] };
    if (this.presence) request.presence = true;
    return request;
  }

  /** @param {Record<string, any>} message */
  onSubscribed(message) {
    const since = this._sinceSent;
    const asked = since !== null && since[0] === HISTORY_EPOCH;
    const epoch = String(message.epoch);
    const offset = Number(message.offset);
    const missed = Number(message.missed ?? 0);
    const recovered = Boolean(message.recovered);
    if (since === null) {
      this._epoch = epoch;
      this._offset = offset;
    } else if (asked) {
      if (!this._gapSeen) {
        this._epoch = epoch;
        this._offset = offset - missed;
      }
    } else if (!recovered && !this._gapSeen) {
      // Never a silent hole, even if the hub forgot to say so.
      this._gap({ ch: this.ch, epoch, since, first: offset - missed + 1 });
    }
    this._replayLeft = missed;
    this.answered = true;
    const resumed = this.confirmed;
    if (!this.confirmed) {
      this.confirmed = true;
      this._resolve(this);
    }
    this.emit("subscribed", { ch: this.ch, epoch, offset, recovered, missed, resumed });
    if (since !== null && !asked) {
      this._client._report("resumed", { ch: this.ch, recovered: missed, gap: !recovered });
    }
    this._history = false;
  }

  /** @param {Record<string, any>} message */
  onMessage(message) {
    const epoch = String(message.epoch);
    const offset = Number(message.offset);
    const replayed = this._replayLeft > 0;
    if (replayed) this._replayLeft -= 1;
    if (epoch === this._epoch) {
      if (offset <= this._offset) {
        this.duplicates += 1; // belt and braces: the hub de-duplicates too
        return false;
      }
      if (offset > this._offset + 1) {
        this._gap({ ch: this.ch, epoch, since: [epoch, this._offset], first: offset });
      }
    } else if (this._epoch !== null) {
      this._gap({ ch: this.ch, epoch, since: [this._epoch, this._offset], first: offset });
    }
    this._epoch = epoch;
    this._offset = offset;
    /** @type {Publication} */
    const publication = { ch: this.ch, epoch, offset, data: message.data, replayed };
    if (message.id !== undefined) publication.id = message.id;
    if (message.user !== undefined) publication.user = message.user;
    this.emit("message", publication);
    return true;
  }

  /** @param {Record<string, any>} message */
  onGap(message) {
    const epoch = String(message.epoch);
    const first = Number(message.from);
    if (epoch === this._epoch && first <= this._offset + 1) return; // nothing is missing
    this._gapSeen = true;
    const sent = this._sinceSent;
    if (sent !== null && sent[0] === HISTORY_EPOCH && !this.confirmed) {
      // The answer to "everything history holds": nothing we had is lost.
      this._epoch = epoch;
      this._offset = first - 1;
      return;
    }
    const since = message.since
      ? /** @type {[string, number]} */ ([String(message.since.epoch), Number(message.since.offset)])
      : this.position;
    this._gap({ ch: this.ch, epoch, since, first });
  }

  /** @param {Presence} snapshot */
  onPresence(snapshot) {
    if (!this.presence) return;
    this.count = snapshot.count;
    if (snapshot.members !== null) {
      for (const user of this._expiry.keys()) this._clearExpiry(user);
      this.members = new Map(snapshot.members);
      for (const member of this.members.values()) {
        if (member.state != null) this._expireLater(member.user, SNAPSHOT_STATE_TTL);
      }
    }
    this.emit("presence", snapshot);
  }

  /**
   * @param {string} kind
   * @param {Record<string, any>} message
   */
  onMember(kind, message) {
    if (!this.presence) return;
    const user = String(message.user);
    if (kind === "join") {
      const info = message.info ?? {};
      const known = this.members.get(user);
      if (!known) this.count += 1;
      this.members.set(user, { user, info, clients: known?.clients ?? 1, state: known?.state ?? null });
      this.emit("join", { ch: this.ch, user, info });
    } else if (kind === "leave") {
      if (this.members.delete(user)) this.count = Math.max(0, this.count - 1);
      this._clearExpiry(user);
      this.emit("leave", { ch: this.ch, user });
    } else {
      const state = message.state ?? null;
      const ttl = message.ttl === undefined ? null : Number(message.ttl);
      this._setState(user, state);
      this._clearExpiry(user);
      if (state !== null && ttl !== null) this._expireLater(user, ttl);
      this.emit("state", { ch: this.ch, user, state, ttl, expired: false });
    }
  }

  /**
   * End the subscription: pending `ready` rejects, timers stop.
   * @param {Error} error
   */
  finish(error) {
    this.ended = true;
    if (!this.confirmed) this._reject(error);
    for (const user of [...this._expiry.keys()]) this._clearExpiry(user);
  }

  /** @param {Error} error */
  refuse(error) {
    this.finish(error);
  }

  // --- private -----------------------------------------------------------------------

  /** @param {Gap} gap */
  _gap(gap) {
    this._epoch = gap.epoch;
    this._offset = gap.first - 1;
    this._client._report("gap", gap);
    this.emit("gap", gap);
  }

  /**
   * @param {string} user
   * @param {any} state
   */
  _setState(user, state) {
    const member = this.members.get(user);
    if (member) this.members.set(user, { ...member, state });
  }

  /**
   * Clear a state after `ttl` seconds unless renewed: an expiry event from the
   * hub can be lost (a server process dies), so don't show "typing" forever.
   * @param {string} user
   * @param {number} ttl
   */
  _expireLater(user, ttl) {
    // A little later than the hub, so that its own expiry normally comes first.
    const timer = setTimeout(() => {
      this._expiry.delete(user);
      const member = this.members.get(user);
      if (!member || member.state === null) return;
      this._setState(user, null);
      this.emit("state", { ch: this.ch, user, state: null, ttl: null, expired: true });
    }, (ttl + 1) * 1000);
    this._expiry.set(user, timer);
  }

  /** @param {string} user */
  _clearExpiry(user) {
    const timer = this._expiry.get(user);
    if (timer !== undefined) clearTimeout(timer);
    this._expiry.delete(user);
  }
}

// --- Client --------------------------------------------------------------------------

/**
 * @typedef {object} ClientEvents
 * @property {{state: ClientState}} statechange
 * @property {{client: string, user: string, attempt: number, limits: Record<string, number>}} connected
 *   A connection opened and the hub welcomed it.
 * @property {{code: number, reason: string}} disconnected The connection ended
 *   (1006 when no close frame arrived: a dead line, a reset, a refused dial).
 * @property {{attempt: number, delay: number, at: number, code: number, reason: string}} reconnecting
 *   The client dials again in `delay` seconds, at `at` (`performance.now()` time).
 * @property {{ch: string, recovered: number, gap: boolean}} resumed A
 *   subscription was renewed after a redial; `recovered` messages were replayed.
 * @property {Gap} gap
 * @property {{pending: number}} offline The browser lost its network (the
 *   `offline` event, or `navigator.onLine` false at `start()`): reported at once;
 *   the connection is given up and nothing is dialled until `online`. `pending`
 *   publishes wait in the queue.
 * @property {{pending: number}} online The network is back: the client dials at
 *   once, its backoff started over.
 * @property {{error: HubError, ch: string, id: string}} publish-failed A publish
 *   was refused for good (its promise rejects with the same error): `too_large`
 *   before it was sent, or an `error` of the hub that isn't worth a retry
 *   (`forbidden`, `bad_request`...). Never sent again.
 * @property {{code: number | null, reason: string, error: Error}} stopped The
 *   client stopped for good: a close code that forbids redialling (`code`: 1008
 *   abuse, 1009 too big...), `maxAttempts` or the backoff ran out (`code`: the
 *   last close code), or a bad URL (`code` null). An `error` event with
 *   `fatal: true` comes first, as in earlier versions.
 * @property {{error: Error, fatal: boolean}} error Something went wrong;
 *   `fatal` when the client stopped for good.
 * @property {{ch: string, subscription: Subscription}} server-subscribed The
 *   server subscribed this client to `ch` (its server API): the client adopts
 *   the subscription (in `subscriptions`), resumes it after a redial like its
 *   own, and reports it here so that the page can listen to its messages.
 * @property {{ch: string}} server-unsubscribed The server unsubscribed this
 *   client from `ch`: the subscription ended (`ClientClosed`).
 */

/**
 * A hub client that redials, resumes its subscriptions and queues its publishes.
 * @extends {Emitter<ClientEvents>}
 */
export class Client extends Emitter {
  /**
   * @param {string} url The hub's URL: `ws://`, `wss://`, or a path such as
   *   `/ws`, resolved against the page (`http` becomes `ws`, `https` `wss`).
   * @param {ClientOptions} [options]
   */
  constructor(url, options = {}) {
    super();
    this.url = resolveUrl(url);
    this._token = options.token ?? null;
    const base = options.backoffBase ?? POLICY.backoff.base;
    const cap = options.backoffCap ?? POLICY.backoff.cap;
    if (!(base > 0) || !(cap >= base)) throw new RangeError(`need 0 < backoffBase <= backoffCap, got ${base} and ${cap}`);
    const scale = base / POLICY.backoff.base;
    const policy = { ...POLICY.backoff, base, cap, first: POLICY.backoff.first.map((bound) => bound * scale) };
    this._backoff = options.backoff ?? ((attempt) => redialDelay(attempt, policy));
    this._maxAttempts = checkCount("maxAttempts", options.maxAttempts ?? null);
    this._resetAfter = checkSeconds("resetAfter", options.resetAfter === undefined ? POLICY.backoff.reset_after : options.resetAfter);
    this._interval = checkSeconds("heartbeatInterval", options.heartbeatInterval === undefined ? POLICY.heartbeat.interval : options.heartbeatInterval);
    this._timeout = checkSeconds("heartbeatTimeout", options.heartbeatTimeout === undefined ? POLICY.heartbeat.timeout : options.heartbeatTimeout);
    this._maxQueue = checkCount("maxQueue", options.maxQueue === undefined ? 1000 : options.maxQueue);
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this._watchPage = options.watchPage ?? typeof document !== "undefined";

    /** @type {ClientState} */
    this.state = "idle";
    /** The hub's id for the current (or last) connection. @type {string | null} */
    this.clientId = null;
    /** Who the hub says we are. @type {string | null} */
    this.user = null;
    /** When the next dial happens (`performance.now()` time), while reconnecting. @type {number | null} */
    this.nextAttemptAt = null;
    /** Counters, as in the Python client. */
    this.stats = { connects: 0, disconnects: 0, deadLines: 0, duplicates: 0, gaps: 0, republished: 0, refreshes: 0 };
    /** Whether a `refresh` is being answered (the token function is running). */
    this._refreshing = false;

    /** @type {Map<string, Subscription>} */
    this._subs = new Map();
    /** Publishes waiting for their ack, by request id, oldest first. @type {Map<string, Outgoing>} */
    this._outbox = new Map();
    /** @type {Map<string, {ch: string, resolve: (p: Presence) => void, reject: (e: Error) => void}>} */
    this._queries = new Map();
    /** @type {Array<() => void>} */
    this._room = [];
    this._seq = 0;
    this._idPrefix = randomId() + "-";

    /** The socket being dialled or open. @type {WebSocket | null} */
    this._socket = null;
    /** The socket once welcomed. @type {WebSocket | null} */
    this._ws = null;
    /** Dials since the backoff last started over, the current one included. */
    this._attempts = 0;
    /** Delays drawn since the backoff last started over. */
    this._failures = 0;
    /** @type {number | null} */
    this._openedAt = null;
    /** The hub's limits from the last welcome (`message`, `rate`, `burst`...). @type {Record<string, number>} */
    this.limits = {};
    /** Spends a token of the hub's announced rate on every message sent. */
    this._pacer = new Pacer((text, entry) => this._write(text, entry));
    /** Publishes are held back after a refusal worth a retry, until `_retryTimer` fires. */
    this._stalled = false;
    /** Retries drawn from the backoff since the last ack (for `unavailable` and `internal`). */
    this._retryAttempt = 0;
    /** Whether the browser says it has no network. */
    this._offline = false;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._retryTimer = null;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._redialTimer = null;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._openTimer = null;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._beatTimer = null;
    this._lastRx = 0;
    /** When the unanswered ping went out, or null. @type {number | null} */
    this._pingAt = null;
    /** When to give the line up if nothing arrives after that ping. @type {number | null} */
    this._deadline = null;
    this._nextPing = 0;
    this._beatDue = 0;
    this._reprobed = false;
    /** @type {Error | null} */
    this._fatal = null;
    this._closing = false;
    this._onPage = this._onPage.bind(this);
  }

  // --- public API: lifecycle ---------------------------------------------------------

  /** Whether a connection is open and welcomed right now. */
  get isConnected() {
    return this._ws !== null;
  }

  /** How many publishes wait for their ack (offline or in flight). */
  get pending() {
    return this._outbox.size;
  }

  /** The subscriptions, by channel. */
  get subscriptions() {
    return this._subs;
  }

  /** Start connecting; the client redials by itself from then on. */
  start() {
    if (this.state !== "idle") throw new Error("the client is already started");
    if (this._watchPage) {
      this._watch(true);
      if (!isOnline()) {
        this._goOffline();
        return;
      }
    }
    this._dial();
  }

  /** Close the connection with 1000 and stop; pending calls reject with `ClientClosed`. */
  close() {
    if (this._closing || this.state === "closed") return;
    this._closing = true;
    const socket = this._socket;
    this._forget();
    if (socket) {
      try {
        socket.close(1000);
      } catch {
        // already closing
      }
    }
    this._endAll(new ClientClosed("the client is closed"));
    this._setState("closed");
  }

  /**
   * Check the line now: redial at once if waiting to, else probe the open
   * connection with a short deadline. The page's visibility and network events
   * call this.
   */
  check() {
    if (this._offline) {
      if (isOnline()) this._goOnline(); // the online event was missed (a frozen page)
      return;
    }
    if (this.state === "reconnecting" && this._redialTimer !== null) {
      clearTimeout(this._redialTimer);
      this._redialTimer = null;
      this._dial();
    } else if (this._ws !== null && this._interval !== null) {
      // Anything within the probe's deadline proves the line alive; a fresh
      // deadline, because older ones may have passed while the page slept.
      this._ping(this._probeTimeout());
      this._scheduleBeat();
    }
  }

  // --- public API: channels ----------------------------------------------------------

  /**
   * Subscribe to `ch`. Returns at once; `subscription.ready` resolves when the
   * hub confirms (while offline, once a connection opens).
   * @param {string} ch
   * @param {SubscribeOptions} [options]
   * @returns {Subscription}
   */
  subscribe(ch, options = {}) {
    this._checkUsable();
    if (this._subs.has(ch)) throw new Error(`already subscribed to ${JSON.stringify(ch)}`);
    const sub = new Subscription(this, ch, options);
    this._subs.set(ch, sub);
    if (this._ws !== null) this._sendSubscribe(sub);
    return sub;
  }

  /**
   * Leave `ch`; does nothing if not subscribed.
   * @param {string} ch
   */
  unsubscribe(ch) {
    const sub = this._subs.get(ch);
    if (!sub) return;
    this._subs.delete(ch);
    const sent = sub.confirmed || sub.rid !== null;
    sub.finish(new ClientClosed("unsubscribed"));
    // After a subscribe in flight, the hub processes this second: it undoes it.
    if (this._ws !== null && sent) this._send(encode({ type: "unsubscribe", ch }));
  }

  /**
   * Publish `data` on `ch`; resolves with the hub's ack.
   *
   * While offline the publish waits in the queue and goes out, in order, once a
   * connection opens; it is sent again after each redial until acked, and the
   * hub stores it once (same id). Every publish settles: it resolves with the
   * ack, or rejects with a {@link HubError} — `too_large` at once when the
   * request (UTF-8 bytes of its JSON) exceeds the hub's announced
   * `limits.message` (if no connection announced it yet, when one does), or the
   * hub's code when it refuses the publish for good — or with the error that
   * stopped the client. Refusals worth a retry (`rate_limited`, `unavailable`,
   * `internal`) are retried in order, never reported.
   * @param {string} ch
   * @param {any} data Any JSON value.
   * @param {{id?: string}} [options] `id`: the client message id; unique by default.
   * @returns {Promise<Ack>}
   */
  async publish(ch, data, options = {}) {
    this._checkUsable();
    const id = options.id;
    if (id !== undefined && !(id.length > 0 && id.length <= MAX_ID_LENGTH)) {
      throw new RangeError(`id must have 1 to ${MAX_ID_LENGTH} characters, got ${id.length}`);
    }
    const rid = this._nextRid("p");
    const msgId = id ?? this._idPrefix + rid;
    const text = encode({ type: "publish", ch, data, id: msgId, rid });
    const size = utf8Length(text);
    const error = this._oversize(ch, msgId, size);
    if (error !== null) {
      this._report("publish-failed", { error, ch, id: msgId });
      throw error;
    }
    while (this._maxQueue !== null && this._outbox.size >= this._maxQueue) {
      await new Promise((resolve) => this._room.push(() => resolve(undefined)));
      this._checkUsable();
    }
    return new Promise((resolve, reject) => {
      /** @type {Outgoing} */
      const entry = { ch, id: msgId, rid, text, size, sent: false, held: false, resolve, reject };
      this._outbox.set(rid, entry);
      if (this._ws !== null && !this._stalled) this._send(text, entry);
    });
  }

  /**
   * Set (or clear, with `null`) your ephemeral state on `ch`, e.g. `{typing: true}`.
   * Ephemeral: while offline it is dropped. Returns whether it was sent.
   * @param {string} ch
   * @param {Record<string, any> | null} state
   */
  setState(ch, state) {
    this._checkUsable();
    if (!this._subs.has(ch)) throw new Error(`not subscribed to ${JSON.stringify(ch)}`);
    if (this._ws === null) return false;
    this._send(encode({ type: "state", ch, state, rid: this._nextRid("t") }));
    return true;
  }

  /**
   * Ask the hub who is in `ch`; while offline, wait for a connection.
   * @param {string} ch
   * @returns {Promise<Presence>}
   */
  presence(ch) {
    this._checkUsable();
    const rid = this._nextRid("q");
    return new Promise((resolve, reject) => {
      this._queries.set(rid, { ch, resolve, reject });
      if (this._ws !== null) this._send(encode({ type: "presence", ch, rid }));
    });
  }

  // --- private: dialling -------------------------------------------------------------

  async _dial() {
    this._redialTimer = null;
    this.nextAttemptAt = null;
    if (this._closing || this._fatal) return;
    if (this._offline) {
      this._setState("offline");
      return;
    }
    this._attempts += 1;
    this._setState("connecting");
    let token = this._token;
    try {
      if (typeof token === "function") token = await token();
    } catch (error) {
      this._retry(1006, `token: ${error}`);
      return;
    }
    if (this._closing || this._fatal) return;
    const protocols = [SUBPROTOCOL];
    if (token) protocols.push(TOKEN_PREFIX + token);
    let socket;
    try {
      socket = new this._WebSocket(this.url, protocols);
    } catch (error) {
      this._stop(/** @type {Error} */ (error)); // a bad URL or token: it would fail again
      return;
    }
    this._socket = socket;
    socket.onmessage = (event) => this._onSocketMessage(socket, event);
    socket.onclose = (event) => this._onSocketClose(socket, event.code, event.reason);
    if (this._timeout !== null) {
      // A line that dies during the handshake is dead too.
      this._openTimer = setTimeout(() => this._giveUp(socket, "no welcome in time"), this._timeout * 1000);
    }
  }

  /**
   * @param {WebSocket} socket
   * @param {MessageEvent} event
   */
  _onSocketMessage(socket, event) {
    if (socket !== this._socket) return;
    this._lastRx = now();
    this._reprobed = false;
    const message = parse(event.data);
    if (this._ws === null) {
      if (message === null || message.type !== "welcome") {
        this._report("error", { error: new HubError("bad_welcome", "the server didn't send a welcome: is it an openline hub?"), fatal: false });
        this._giveUp(socket, "no welcome");
        return;
      }
      this._welcome(socket, message);
      return;
    }
    if (message === null) {
      this._report("error", { error: new HubError("malformed", `the hub sent a malformed message: ${String(event.data).slice(0, 80)}`), fatal: false });
      return;
    }
    this._receive(message);
  }

  /**
   * @param {WebSocket} socket
   * @param {Record<string, any>} welcome
   */
  _welcome(socket, welcome) {
    if (this._openTimer !== null) clearTimeout(this._openTimer);
    this._openTimer = null;
    this._ws = socket;
    this._openedAt = now();
    if (this._resetAfter === null) this._attempts = this._failures = 0;
    this.clientId = String(welcome.client ?? "");
    this.user = String(welcome.user ?? "");
    this.limits = parseLimits(welcome.limits);
    this._pacer.reset(this.limits);
    this._stalled = false;
    this._retryAttempt = 0;
    const attempt = this._attempts;
    this._setState("open");
    this._settleOversize();
    for (const sub of this._subs.values()) this._sendSubscribe(sub);
    for (const [rid, query] of this._queries) this._send(encode({ type: "presence", ch: query.ch, rid }));
    for (const entry of this._outbox.values()) {
      entry.sent = entry.held = false;
      this._send(entry.text, entry);
    }
    this.stats.connects += 1;
    this._report("connected", { client: this.clientId, user: this.user, attempt, limits: this.limits });
    this._pingAt = this._deadline = null;
    this._nextPing = now() + (this._interval ?? 0) * 1000;
    this._scheduleBeat();
  }

  /**
   * The socket closed (or we gave it up): report, then redial or stop.
   * @param {WebSocket} socket
   * @param {number} code
   * @param {string} reason
   */
  _onSocketClose(socket, code, reason) {
    if (socket !== this._socket) return; // given up already
    const welcomed = this._ws !== null;
    this._forget();
    if (this._closing) return;
    if (welcomed) this._report("disconnected", { code, reason });
    this._retry(code, reason);
  }

  /**
   * Give a connection up without waiting for its close event (a dead line may
   * take minutes to report one), and go on as if it closed with 1006.
   * @param {WebSocket} socket
   * @param {string} reason
   */
  _giveUp(socket, reason) {
    if (socket !== this._socket) return;
    closeQuietly(socket, 4000, reason); // if the bytes still get through, the hub learns why
    if (reason === "heartbeat timeout") this.stats.deadLines += 1;
    this._onSocketClose(socket, 1006, reason);
  }

  /**
   * Forget the current socket: timers stop, requests in flight wait for the next one.
   */
  _forget() {
    const socket = this._socket;
    if (socket) {
      socket.onmessage = null;
      socket.onclose = null;
    }
    if (this._ws !== null) this.stats.disconnects += 1;
    this._socket = null;
    this._ws = null;
    for (const timer of [this._openTimer, this._beatTimer, this._retryTimer, this._redialTimer]) {
      if (timer !== null) clearTimeout(timer);
    }
    this._openTimer = this._beatTimer = this._retryTimer = this._redialTimer = null;
    this._pacer.clear();
    this._stalled = false;
    this._pingAt = this._deadline = null;
    for (const sub of this._subs.values()) sub.rid = null;
  }

  /**
   * Decide what follows a failure: redial after a delay, or stop.
   * @param {number} code
   * @param {string} reason
   */
  _retry(code, reason) {
    const openedAt = this._openedAt;
    this._openedAt = null;
    if (openedAt !== null && this._resetAfter !== null && now() - openedAt >= this._resetAfter * 1000) {
      this._attempts = this._failures = 0; // the connection was healthy: start over
    }
    if (!RETRY_CLOSE_CODES.has(code)) {
      this._stop(new HubError("closed", `the hub closed the connection with ${code}${reason ? ` (${reason})` : ""}: not redialling`, { closeCode: code }));
      return;
    }
    if (this._maxAttempts !== null && this._attempts >= this._maxAttempts) {
      this._stop(new HubError("closed", `gave up after ${this._attempts} attempts (last: ${code} ${reason})`, { closeCode: code }));
      return;
    }
    if (this._offline) {
      this._setState("offline"); // `online` dials
      return;
    }
    this._failures += 1;
    const backoff = this._backoff(this._failures);
    if (backoff === null || !(backoff >= 0)) {
      this._stop(new HubError("closed", `the backoff ran out (last: ${code} ${reason})`, { closeCode: code }));
      return;
    }
    // A draining hub says how long to stay away at least: honour it, jitter included.
    const hint = RETRY_HINT_CLOSE_CODES.has(code) ? parseRetryHint(reason) : null;
    const delay = hint === null ? backoff : Math.max(backoff, hint);
    const at = now() + delay * 1000;
    this.nextAttemptAt = at;
    this._setState("reconnecting");
    this._report("reconnecting", { attempt: this._attempts + 1, delay, at, code, reason });
    this._redialTimer = setTimeout(() => this._dial(), delay * 1000);
  }

  // --- private: heartbeat ------------------------------------------------------------

  _scheduleBeat() {
    if (this._interval === null || this._ws === null) return;
    if (this._beatTimer !== null) clearTimeout(this._beatTimer);
    // Short, regular checks: each one judges by timestamps, so a late one is harmless.
    const period = Math.min(1000, this._interval * 500);
    this._beatDue = now() + period;
    this._beatTimer = setTimeout(() => this._beat(), period);
  }

  _beat() {
    this._beatTimer = null;
    const socket = this._ws;
    if (socket === null) return;
    const t = now();
    const late = t - this._beatDue > LATE_MS;
    if (this._pingAt !== null && this._lastRx >= this._pingAt) this._pingAt = this._deadline = null;
    if (this._deadline !== null && t >= this._deadline) {
      if (late && !this._reprobed) {
        // We were throttled or frozen: the silence may be ours. Ask again before judging.
        this._reprobed = true;
        this._ping(this._probeTimeout());
      } else {
        this._giveUp(socket, "heartbeat timeout");
        return;
      }
    } else if (this._pingAt === null && t >= this._nextPing) {
      this._ping(this._timeout);
    }
    this._scheduleBeat();
  }

  /**
   * Send a ping; anything that arrives after it answers it, else the line is
   * given up `timeout` seconds from now (`null`: never).
   * @param {number | null} timeout
   */
  _ping(timeout) {
    const t = now();
    this._pingAt = t;
    this._deadline = timeout === null ? null : t + timeout * 1000;
    this._nextPing = t + (this._interval ?? 0) * 1000;
    this._send(PING, null, true);
  }

  /** The deadline of a probe, in seconds: short, to notice a dead line soon. */
  _probeTimeout() {
    return this._timeout === null ? PROBE_TIMEOUT : Math.min(this._timeout, PROBE_TIMEOUT);
  }

  // --- private: page events ----------------------------------------------------------

  /** @param {boolean} on */
  _watch(on) {
    if (typeof window === "undefined") return;
    const method = on ? "addEventListener" : "removeEventListener";
    for (const type of ["online", "offline", "pageshow"]) window[method](type, this._onPage);
    if (typeof document !== "undefined") {
      for (const type of ["visibilitychange", "resume"]) document[method](type, this._onPage);
    }
  }

  /** @param {Event} event */
  _onPage(event) {
    if (this._closing || this.state === "closed") return;
    if (event.type === "offline") {
      this._goOffline();
    } else if (event.type === "online") {
      this._goOnline();
    } else if (event.type !== "visibilitychange" || document.visibilityState === "visible") {
      this.check();
    }
  }

  /**
   * The browser has no network: say so now rather than when the heartbeat
   * notices (up to 20 s), give the connection up (nothing can cross it; what
   * was in flight is sent again after the redial, stored once), and dial
   * nothing until the network is back.
   */
  _goOffline() {
    if (this._offline || this._fatal || this._closing) return;
    this._offline = true;
    const socket = this._socket;
    const welcomed = this._ws !== null;
    this._forget();
    this._openedAt = null;
    this.nextAttemptAt = null;
    if (socket !== null) closeQuietly(socket, 4001, "offline");
    if (welcomed) this._report("disconnected", { code: 1006, reason: "offline" });
    this._setState("offline");
    this._report("offline", { pending: this.pending });
  }

  /** The network is back: dial at once, the backoff started over. */
  _goOnline() {
    if (!this._offline || this._fatal || this._closing) return;
    this._offline = false;
    this._attempts = this._failures = 0;
    this._report("online", { pending: this.pending });
    if (this._socket === null) this._dial();
    else this.check(); // a line that outlived the cut may be dead: probe it now
  }

  // --- private: sending --------------------------------------------------------------

  /** @param {string} kind */
  _nextRid(kind) {
    this._seq += 1;
    return `${kind}${this._seq}`;
  }

  /**
   * Send on the open connection, paced by the hub's announced rate.
   * @param {string} text
   * @param {Outgoing | null} [entry] The publish it is, if one.
   * @param {boolean} [urgent] Ahead of every message waiting for a token (pings).
   */
  _send(text, entry = null, urgent = false) {
    if (this._ws === null) return;
    this._pacer.send(text, entry, urgent);
  }

  /**
   * Write to the socket now (the pacer's output).
   * @param {string} text
   * @param {Outgoing | null} entry
   */
  _write(text, entry) {
    const ws = this._ws;
    if (ws === null) return;
    try {
      ws.send(text);
      if (entry !== null) entry.sent = true;
    } catch {
      // closing under us: the close event follows, and the request goes out after the redial
    }
  }

  /** @param {Subscription} sub */
  _sendSubscribe(sub) {
    this._send(encode(sub.request(this._nextRid("s"))));
  }

  /**
   * A publish was refused with a code worth a retry: the hub didn't store it,
   * and (from this version of the protocol on) refuses every later publish on
   * this connection until this one comes again. Hold every publish back, wait,
   * then send every unacknowledged one again, in order, this one first.
   * @param {Outgoing} entry
   * @param {string} code
   * @param {unknown} retryAfter
   */
  _refused(entry, code, retryAfter) {
    if (entry.held) {
      entry.held = false; // sent before we knew: the hub held it, as expected
      return;
    }
    if (this._stalled) return; // already waiting to send everything again
    let later = false;
    for (const other of this._outbox.values()) {
      if (other === entry) later = true;
      else if (later && other.sent) other.held = true; // its refusal is on its way
    }
    this._holdPublishes(this._retryDelay(code, retryAfter));
  }

  /**
   * Stop sending publishes for `delay` seconds, then send the unacknowledged
   * ones again in order (and with `everything`, unconfirmed subscribes and
   * presence queries too: an older hub's refusals don't say which request).
   * @param {number} delay
   * @param {boolean} [everything]
   */
  _holdPublishes(delay, everything = false) {
    this._stalled = true;
    for (const entry of this._pacer.dropPublishes()) entry.sent = false;
    if (this._retryTimer !== null) clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => this._resend(everything), delay * 1000);
  }

  /** @param {boolean} everything */
  _resend(everything) {
    this._retryTimer = null;
    this._stalled = false;
    if (everything) {
      for (const sub of this._subs.values()) {
        if (sub.rid !== null && !sub.confirmed) this._sendSubscribe(sub);
      }
      for (const [rid, query] of this._queries) this._send(encode({ type: "presence", ch: query.ch, rid }));
    }
    for (const entry of this._outbox.values()) {
      this.stats.republished += 1;
      this._send(entry.text, entry);
    }
  }

  /**
   * Seconds to wait before a retry: the hub's `retry_after` for `rate_limited`,
   * else the next delay of the backoff.
   * @param {string} code
   * @param {unknown} retryAfter
   */
  _retryDelay(code, retryAfter) {
    if (code === "rate_limited" && typeof retryAfter === "number" && retryAfter >= 0 && Number.isFinite(retryAfter)) {
      return retryAfter;
    }
    this._retryAttempt += 1;
    const delay = this._backoff(this._retryAttempt);
    return delay === null || !(delay >= 0) ? POLICY.backoff.cap : delay;
  }

  /**
   * Send a subscribe or presence query again after a refusal worth a retry,
   * unless a redial sent it again meanwhile.
   * @param {number} delay
   * @param {() => void} resend
   */
  _retryRequest(delay, resend) {
    const socket = this._ws;
    setTimeout(() => {
      if (this._ws === socket && socket !== null) resend();
    }, delay * 1000);
  }

  /**
   * The error the publish gets if it exceeds the hub's message limit, or `null`.
   * @param {string} ch
   * @param {string} id
   * @param {number} size
   */
  _oversize(ch, id, size) {
    const limit = this.limits.message;
    if (limit === undefined || size <= limit) return null;
    return new HubError("too_large", `publish of ${size} bytes exceeds the hub's message limit of ${limit} bytes`, { ch, id });
  }

  /** Reject the queued publishes a new connection's limit is too small for. */
  _settleOversize() {
    for (const entry of [...this._outbox.values()]) {
      const error = this._oversize(entry.ch, entry.id, entry.size);
      if (error !== null) this._settle(entry, error);
    }
  }

  /**
   * A publish failed for good: it leaves the queue and its promise rejects.
   * @param {Outgoing} entry
   * @param {HubError} error
   */
  _settle(entry, error) {
    this._outbox.delete(entry.rid);
    this._makeRoom();
    entry.reject(error);
    this._report("publish-failed", { error, ch: entry.ch, id: entry.id });
  }

  // --- private: receiving ------------------------------------------------------------

  /** @param {Record<string, any>} message */
  _receive(message) {
    const kind = message.type;
    try {
      if (kind === "ack") this._onAck(message);
      else if (kind === "error") this._onError(message);
      else if (kind === "presence" && message.rid !== undefined) this._onPresenceReply(message);
      else if (kind === "subscribed" && !this._subs.has(message.ch)) this._onServerSubscribed(message);
      else if (CHANNEL_TYPES.has(kind)) this._onChannel(kind, message);
      else if (kind === "refresh") this._refreshToken();
      else if (kind === "refreshed") this.stats.refreshes += 1;
      else if (kind === "unsubscribed") this._onUnsubscribed(message);
      // pong and types of later versions: nothing to do.
    } catch (error) {
      this._report("error", { error: new HubError("malformed", `the hub sent a malformed ${kind} message: ${error}`), fatal: false });
    }
  }

  /** Answers the hub's `refresh`: a new token from the token function, on the same connection. */
  async _refreshToken() {
    const source = this._token;
    const ws = this._ws;
    if (typeof source !== "function" || ws === null || this._refreshing) return;
    this._refreshing = true;
    try {
      const token = await source();
      if (token && this._ws === ws) this._send(encode({ type: "token", token, rid: this._nextRid("k") }));
    } catch (error) {
      // The hub closes with 4001 at expiry; the redial asks the function again.
      this._report("error", { error: new HubError("token", `token: ${error}`), fatal: false });
    } finally {
      this._refreshing = false;
    }
  }

  /**
   * @param {string} kind
   * @param {Record<string, any>} message
   */
  _onChannel(kind, message) {
    const sub = this._subs.get(message.ch);
    if (!sub) return; // unsubscribed meanwhile
    if (kind === "message") {
      if (!sub.onMessage(message)) this.stats.duplicates += 1;
    } else if (kind === "gap") {
      sub.onGap(message);
    } else if (kind === "subscribed") {
      // Else it answers an earlier request. Without a rid, the server subscribed
      // us itself; if our own subscribe was in flight, the hub refuses it as
      // already_subscribed, so this is its answer.
      if (message.rid === sub.rid || (message.rid === undefined && !sub.answered)) sub.onSubscribed(message);
    } else if (kind === "presence") {
      sub.onPresence(parsePresence(message));
    } else {
      sub.onMember(kind, message);
    }
  }

  /**
   * Adopt a subscription the server made for us (docs/protocol.md, server API).
   * @param {Record<string, any>} message
   */
  _onServerSubscribed(message) {
    if (message.rid !== undefined) return; // the answer to a subscribe we dropped meanwhile
    const ch = String(message.ch);
    const sub = new Subscription(this, ch, {});
    this._subs.set(ch, sub);
    this._report("server-subscribed", { ch, subscription: sub });
    sub.onSubscribed(message);
  }

  /**
   * End a subscription the server ended; ignore the answer to our own unsubscribe.
   * @param {Record<string, any>} message
   */
  _onUnsubscribed(message) {
    const sub = this._subs.get(message.ch);
    // Our own unsubscribe forgot the subscription at once; one subscribed again
    // since is unanswered until the hub's reply to that comes.
    if (!sub || !sub.answered || message.rid !== undefined) return;
    this._subs.delete(sub.ch);
    sub.finish(new ClientClosed("unsubscribed by the server"));
    this._report("server-unsubscribed", { ch: sub.ch });
  }

  /** @param {Record<string, any>} message */
  _onAck(message) {
    const rid = String(message.rid);
    const entry = this._outbox.get(rid);
    if (!entry) return; // a second ack after a retry
    this._outbox.delete(rid);
    if (!this._stalled) this._retryAttempt = 0;
    this._makeRoom();
    entry.resolve({
      ch: entry.ch,
      epoch: String(message.epoch),
      offset: Number(message.offset),
      id: entry.id,
      duplicate: Boolean(message.duplicate),
    });
  }

  /** @param {Record<string, any>} message */
  _onError(message) {
    const code = String(message.code);
    const rid = message.rid === undefined ? undefined : String(message.rid);
    const error = new HubError(code, String(message.reason ?? ""), { rid, ch: message.ch, id: message.id });
    const retry = RETRY_CODES.has(code);
    if (rid === undefined) {
      // An older hub refuses rate_limited without saying which request: hold and resend everything.
      if (retry && !this._stalled) this._holdPublishes(this._retryDelay(code, message.retry_after), true);
      else if (!retry) this._report("error", { error, fatal: false });
      return;
    }
    const entry = this._outbox.get(rid);
    if (entry) {
      if (retry) this._refused(entry, code, message.retry_after);
      else this._settle(entry, error);
      return;
    }
    const query = this._queries.get(rid);
    if (query) {
      if (retry) {
        this._retryRequest(this._retryDelay(code, message.retry_after), () => this._send(encode({ type: "presence", ch: query.ch, rid })));
      } else {
        this._queries.delete(rid);
        query.reject(error);
      }
      return;
    }
    const sub = [...this._subs.values()].find((s) => s.rid === rid);
    if (!sub) {
      if (!retry && !rid.startsWith("p")) this._report("error", { error, fatal: false }); // else: a publish settled already
    } else if (retry) {
      this._retryRequest(this._retryDelay(code, message.retry_after), () => {
        if (sub.rid === rid && this._subs.get(sub.ch) === sub) this._sendSubscribe(sub);
      });
    } else if (code !== "already_subscribed") {
      this._subs.delete(sub.ch);
      this._report("error", { error, fatal: false });
      sub.refuse(error);
    }
  }

  /** @param {Record<string, any>} message */
  _onPresenceReply(message) {
    const rid = String(message.rid);
    const query = this._queries.get(rid);
    if (!query) return;
    this._queries.delete(rid);
    query.resolve(parsePresence(message));
  }

  // --- private: events and endings ---------------------------------------------------

  /**
   * @template {keyof ClientEvents} K
   * @param {K} type
   * @param {ClientEvents[K]} detail
   */
  _report(type, detail) {
    if (type === "gap") this.stats.gaps += 1;
    this.emit(type, detail);
  }

  /** @param {ClientState} state */
  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit("statechange", { state });
  }

  _makeRoom() {
    const waiters = this._room;
    this._room = [];
    for (const wake of waiters) wake();
  }

  _checkUsable() {
    if (this._fatal) throw this._fatal;
    if (this._closing) throw new ClientClosed("the client is closed");
  }

  /**
   * Stop for good: the error reaches every pending call and subscription.
   * @param {Error} error
   */
  _stop(error) {
    this._fatal = error;
    this._forget();
    this._watch(false);
    this._report("error", { error, fatal: true });
    const hubError = error instanceof HubError ? error : null;
    this._report("stopped", { code: hubError?.closeCode ?? null, reason: hubError?.reason ?? error.message, error });
    this._endAll(error);
    this._setState("closed");
  }

  /** @param {Error} error */
  _endAll(error) {
    for (const entry of this._outbox.values()) entry.reject(error);
    this._outbox.clear();
    for (const query of this._queries.values()) query.reject(error);
    this._queries.clear();
    for (const sub of this._subs.values()) sub.finish(error);
    this._makeRoom();
    this._watch(false);
  }
}

// --- pacing --------------------------------------------------------------------------

/**
 * A token bucket in front of the socket, so that the client never sends faster
 * than the hub accepts: refilled at `rate × rate_share` tokens per second,
 * holding at most `max(1, floor(burst × burst_share))`, full at each new
 * connection. Every message spends one token and waits for it in order. Without
 * an announced `rate`, messages go out at once.
 *
 * Timers in a background tab fire late (once a second, or once a minute): the
 * bucket then sends at most its capacity per wake-up, slower, never faster.
 */
export class Pacer {
  /** @param {(text: string, entry: Outgoing | null) => void} write */
  constructor(write) {
    this._write = write;
    /** Tokens per second, or `null`: no pacing. @type {number | null} */
    this.rate = null;
    /** Most tokens the bucket holds. */
    this.capacity = 1;
    this._tokens = 0;
    this._at = 0;
    /** @type {Array<{text: string, entry: Outgoing | null}>} */
    this._queue = [];
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._timer = null;
  }

  /**
   * Start over for a new connection with its limits: a full bucket, nothing waiting.
   * @param {Record<string, number>} limits The welcome's `limits` (`rate`, `burst`).
   */
  reset(limits) {
    this.clear();
    const { rate, burst } = limits;
    this.rate = rate !== undefined && rate > 0 ? rate * POLICY.pacing.rate_share : null;
    this.capacity = Math.max(1, Math.floor((burst ?? 1) * POLICY.pacing.burst_share));
    this._tokens = this.capacity;
    this._at = now();
  }

  /** Forget what waits (the connection is gone). */
  clear() {
    this._queue = [];
    if (this._timer !== null) clearTimeout(this._timer);
    this._timer = null;
  }

  /** Messages waiting for a token. */
  get waiting() {
    return this._queue.length;
  }

  /**
   * Send `text` when a token is free.
   * @param {string} text
   * @param {Outgoing | null} entry The publish it is, if one.
   * @param {boolean} urgent Ahead of everything waiting (a heartbeat ping).
   */
  send(text, entry, urgent) {
    if (this.rate === null) {
      this._write(text, entry);
      return;
    }
    if (urgent) this._queue.unshift({ text, entry });
    else this._queue.push({ text, entry });
    this._pump();
  }

  /**
   * Take the publishes that wait for a token out of the line; return them.
   * @returns {Outgoing[]}
   */
  dropPublishes() {
    /** @type {Outgoing[]} */
    const dropped = [];
    this._queue = this._queue.filter((item) => {
      if (item.entry === null) return true;
      dropped.push(item.entry);
      return false;
    });
    return dropped;
  }

  _pump() {
    const rate = this.rate;
    if (rate === null) return;
    const t = now();
    this._tokens = Math.min(this.capacity, this._tokens + ((t - this._at) / 1000) * rate);
    this._at = t;
    while (this._queue.length > 0 && this._tokens >= 1) {
      this._tokens -= 1;
      const item = /** @type {{text: string, entry: Outgoing | null}} */ (this._queue.shift());
      this._write(item.text, item.entry);
    }
    if (this._queue.length > 0 && this._timer === null) {
      const wait = ((1 - this._tokens) / rate) * 1000;
      this._timer = setTimeout(() => {
        this._timer = null;
        this._pump();
      }, Math.max(1, wait));
    }
  }
}

// --- module helpers ------------------------------------------------------------------

/**
 * The numeric limits of a welcome; anything else in it is ignored.
 * @param {unknown} raw
 * @returns {Record<string, number>}
 */
function parseLimits(raw) {
  /** @type {Record<string, number>} */
  const limits = {};
  if (raw === null || typeof raw !== "object") return limits;
  for (const [key, value] of Object.entries(raw)) {
    if (typeof value === "number" && Number.isFinite(value) && value >= 0) limits[key] = value;
  }
  return limits;
}

/** Whether the browser thinks it has a network (true outside browsers). */
function isOnline() {
  return typeof navigator === "undefined" || navigator.onLine !== false;
}

/**
 * Close a socket without waiting for, or hearing of, its close event.
 * @param {WebSocket} socket
 * @param {number} code
 * @param {string} reason
 */
function closeQuietly(socket, code, reason) {
  socket.onmessage = null;
  socket.onclose = null;
  try {
    socket.close(code, reason.slice(0, 100));
  } catch {
    // the browser refuses codes in some states: the socket goes away all the same
  }
}

/**
 * Build a presence snapshot from a `presence` message.
 * @param {Record<string, any>} message
 * @returns {Presence}
 */
export function parsePresence(message) {
  /** @type {Map<string, Member> | null} */
  let members = null;
  if (Array.isArray(message.users)) {
    members = new Map();
    for (const entry of message.users) {
      const user = String(entry.user);
      members.set(user, { user, info: entry.info ?? {}, clients: Number(entry.clients ?? 1), state: entry.state ?? null });
    }
  }
  return { ch: String(message.ch), count: Number(message.count), members };
}

/**
 * @param {unknown} raw
 * @returns {Record<string, any> | null}
 */
function parse(raw) {
  if (typeof raw !== "string") return null;
  try {
    const value = JSON.parse(raw);
    return value !== null && typeof value === "object" && !Array.isArray(value) ? value : null;
  } catch {
    return null;
  }
}

/**
 * Resolve a hub URL against the page: `/ws` becomes `ws://host/ws` (or `wss://`).
 * @param {string} url
 */
function resolveUrl(url) {
  if (/^wss?:\/\//i.test(url) || typeof location === "undefined") return url;
  const resolved = new URL(url, location.href);
  resolved.protocol = resolved.protocol === "https:" ? "wss:" : "ws:";
  return resolved.href;
}

/**
 * @param {string} name
 * @param {number | null} value
 */
function checkSeconds(name, value) {
  if (value !== null && !(typeof value === "number" && value > 0 && Number.isFinite(value))) {
    throw new RangeError(`${name} must be a positive number of seconds or null, got ${value}`);
  }
  return value;
}

/**
 * @param {string} name
 * @param {number | null} value
 */
function checkCount(name, value) {
  if (value !== null && !(Number.isInteger(value) && value >= 1)) {
    throw new RangeError(`${name} must be a whole number >= 1 or null, got ${value}`);
  }
  return value;
}
