// @ts-check
/**
 * The demo page: a chat room, a ticker pushed by the server, and "push vs
 * polling" side by side. Everything live comes through one `Client` from
 * openline.js; the polling lanes use plain `fetch`.
 *
 * Query parameters, for trying things out: `?name=Ada` skips the prompt,
 * `?heartbeat=2` pings every 2 s and gives a silent line up after 2 s more.
 */

import { Client } from "/openline.js";

const ROOM = "room:lobby";
const TICKER = "ticker";
const MAX_SHOWN = 500; // rows (messages and notices) kept on screen
const MAX_REMEMBERED = 5000; // publish ids and offsets remembered, to show each message once
const RENDER_EVERY = 100; // ms: the message list is drawn at most this often
const TYPING_IDLE = 2500; // ms without a keystroke before "stopped typing"
const TYPING_RENEW = 2000; // ms between two "still typing" updates
const SPARK_POINTS = 60;

const params = new URLSearchParams(location.search);
const $ = (/** @type {string} */ selector) => /** @type {HTMLElement} */ (document.querySelector(selector));

// --- identity ------------------------------------------------------------------------

/** A per-tab user id: two tabs are two users, a reload stays the same one. */
function tabId() {
  let id = sessionStorage.getItem("openline-demo-id");
  if (!id) {
    const bytes = crypto.getRandomValues(new Uint8Array(9));
    id = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    sessionStorage.setItem("openline-demo-id", id);
  }
  return id;
}

/**
 * The token to dial with, from the server, which picks our user id and signs it
 * (see openline/web/app.py). Asked before every dial, with the tab's stored token
 * so that the id stays the same; a token the server refuses with 401 (it restarted
 * with a new key, or the token expired) is dropped and a new one asked for under
 * the same name. Sets `me` to the user id the server chose.
 * @param {string} name
 * @returns {Promise<string>}
 */
async function sessionToken(name) {
  const url = `/api/session?name=${encodeURIComponent(name)}`;
  const stored = sessionStorage.getItem("openline-demo-token");
  let response = await fetch(url, { cache: "no-store", headers: stored ? { Authorization: `Bearer ${stored}` } : {} });
  if (response.status === 401 && stored) {
    sessionStorage.removeItem("openline-demo-token");
    response = await fetch(url, { cache: "no-store" });
  }
  if (!response.ok) throw new Error(`no token: HTTP ${response.status}`);
  const session = await response.json();
  sessionStorage.setItem("openline-demo-token", session.token);
  sessionStorage.setItem("openline-demo-user", session.user);
  me = session.user;
  return session.token;
}

/** @param {string} user */
function hue(user) {
  let h = 0;
  for (const char of user) h = (h * 31 + char.charCodeAt(0)) % 360;
  return h;
}

const SUGGESTIONS = ["Ada", "Grace", "Linus", "Barbara", "Ken", "Radia", "Guido", "Margaret", "Dennis", "Frances"];

// --- the connection badge ------------------------------------------------------------

const badge = {
  el: $("#badge"),
  /** @type {ReturnType<typeof setInterval> | null} */
  timer: null,
  /** @type {ReturnType<typeof setTimeout> | null} */
  settle: null,
  /**
   * @param {string} state
   * @param {string} text
   */
  set(state, text) {
    this.el.dataset.state = state;
    /** @type {HTMLElement} */ (this.el.querySelector(".badge-text")).textContent = text;
  },
  stopTimers() {
    if (this.timer !== null) clearInterval(this.timer);
    if (this.settle !== null) clearTimeout(this.settle);
    this.timer = this.settle = null;
  },
  live() {
    this.stopTimers();
    this.set("live", "live");
  },
  /** @param {number} at performance.now() time of the next dial */
  countdown(at) {
    this.stopTimers();
    const show = () => {
      const left = Math.max(0, (at - performance.now()) / 1000);
      this.set("reconnecting", left >= 0.95 ? `reconnecting in ${Math.round(left)} s` : "reconnecting…");
    };
    show();
    this.timer = setInterval(show, 250);
  },
  /**
   * @param {number} recovered
   * @param {boolean} lost
   */
  resumed(recovered, lost) {
    this.stopTimers();
    const what = recovered === 1 ? "1 missed message recovered" : `${recovered} missed messages recovered`;
    this.set("resumed", `resumed · ${what}${lost ? ", some lost" : ""}`);
    this.settle = setTimeout(() => this.live(), 8000);
  },
  /** @param {number} queued messages waiting to be sent */
  offline(queued) {
    this.stopTimers();
    this.set("offline", queued > 0 ? `offline · ${queued} queued` : "offline");
  },
  stopped() {
    this.stopTimers();
    this.set("stopped", "stopped");
  },
};

// --- chat: the message list ----------------------------------------------------------
//
// Messages arrive one event at a time, up to a thousand at once in a replay. Each is
// only queued when it arrives; one animation frame renders everything queued into a
// DocumentFragment, inserts it once and trims the list once. Lookups go through Maps
// and Sets, never through the DOM, and rendering reads no layout: whether to stick to
// the bottom is measured on scroll events, when the layout is fresh anyway.

const messagesEl = /** @type {HTMLOListElement} */ ($("#messages"));
const membersEl = $("#members");
const typingEl = $("#typing");
const composer = /** @type {HTMLFormElement} */ ($("#composer"));
const input = /** @type {HTMLInputElement} */ ($("#text"));
const sendButton = /** @type {HTMLButtonElement} */ (composer.querySelector("button"));
const queueEl = $("#queue");

/** @type {Client} */
let client;
/** @type {import("/openline.js").Subscription} */
let room;
let me = "";

/**
 * A bounded set: remembers the last `limit` keys added.
 */
class RecentSet {
  /** @param {number} limit */
  constructor(limit) {
    this.limit = limit;
    /** @type {Set<string>} */
    this.keys = new Set();
  }

  /** @param {string} key */
  has(key) {
    return this.keys.has(key);
  }

  /** @param {string} key */
  add(key) {
    this.keys.add(key);
    // A Set iterates in insertion order: the first key is the oldest.
    if (this.keys.size > this.limit) this.keys.delete(/** @type {string} */ (this.keys.values().next().value));
  }
}

/**
 * @typedef {{kind: "message", message: import("/openline.js").Publication}
 *   | {kind: "notice", text: string, tone: string}} Row
 */

/** Hours and minutes: one formatter for every message (making one is slow). */
const TIME_FORMAT = new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit" });

const chat = {
  /** Whether the list is scrolled to (near) its end: new rows keep it there. */
  atBottom: true,
  /** When rows were last rendered (performance.now()). */
  renderedAt: 0,
  /** Rows waiting for the next frame. @type {Row[]} */
  queue: /** @type {Row[]} */ ([]),
  frame: 0,
  /** Delivered rows on the page (messages and notices, not pending ones). */
  rows: 0,
  /** Publish ids shown, so a message stored twice (a retry after a restart) shows once. */
  ids: new RecentSet(MAX_REMEMBERED),
  /** `epoch:offset` of messages shown. */
  offsets: new RecentSet(MAX_REMEMBERED),
  /** The page's own messages not yet delivered, by publish id, oldest first. @type {Map<string, HTMLLIElement>} */
  pending: new Map(),
  /** What the page received, for tests: the last MAX_REMEMBERED messages' offset, id and text. */
  received: /** @type {Array<{epoch: string, offset: number, id: string | null, text: string}>} */ ([]),
  duplicates: 0,
};

/**
 * Queue a delivered message for the next frame, unless it was shown already.
 * @param {import("/openline.js").Publication} message
 */
function showMessage(message) {
  const key = `${message.epoch}:${message.offset}`;
  if (chat.offsets.has(key) || (message.id && chat.ids.has(message.id))) {
    chat.duplicates += 1;
    return;
  }
  chat.offsets.add(key);
  if (message.id) chat.ids.add(message.id);
  chat.received.push({ epoch: message.epoch, offset: message.offset, id: message.id ?? null, text: textOf(message.data) });
  if (chat.received.length > MAX_REMEMBERED * 2) chat.received.splice(0, chat.received.length - MAX_REMEMBERED);
  enqueue({ kind: "message", message });
}

/**
 * Queue a notice (someone joined, a gap...) in order with the messages.
 * @param {string} text
 * @param {string} [tone] "", "warn" or "error"
 */
function showNotice(text, tone = "") {
  enqueue({ kind: "notice", text, tone });
}

/** @param {Row} row */
function enqueue(row) {
  chat.queue.push(row);
  // A hidden tab gets no frames: keep only what the list could show anyway.
  if (chat.queue.length > MAX_SHOWN * 2) chat.queue.splice(0, chat.queue.length - MAX_SHOWN);
  if (chat.frame !== 0) return;
  // A frame has a cost of its own (style, paint): during a stream, draw the list at
  // most every RENDER_EVERY ms, several messages at a time, rather than at every frame.
  const wait = RENDER_EVERY - (performance.now() - chat.renderedAt);
  chat.frame =
    wait > 0
      ? setTimeout(() => {
          chat.frame = requestAnimationFrame(renderQueued);
        }, wait)
      : requestAnimationFrame(renderQueued);
}

/** Render every queued row: one fragment, one insert, one trim, no layout read. */
function renderQueued() {
  chat.frame = 0;
  const rows = chat.queue;
  chat.queue = [];
  const stick = chat.atBottom;
  const fragment = document.createDocumentFragment();
  let mine = false;
  // Only a message arriving in calm times slides in: animating a stream or a replay
  // would keep the compositor busy with hundreds of layers.
  const t = performance.now();
  const still = rows.length > 1 || t - chat.renderedAt < 1000;
  chat.renderedAt = t;
  for (const row of rows.length > MAX_SHOWN ? rows.slice(-MAX_SHOWN) : rows) {
    if (row.kind === "notice") {
      fragment.append(noticeElement(row.text, row.tone));
      continue;
    }
    const { message } = row;
    if (message.id) {
      chat.pending.get(message.id)?.remove();
      chat.pending.delete(message.id);
    }
    mine ||= message.user === me;
    const li = messageElement(message, false);
    if (still) li.classList.add("still");
    fragment.append(li);
  }
  messagesEl.insertBefore(fragment, firstPending());
  chat.rows += Math.min(rows.length, MAX_SHOWN);
  trimRows();
  if (stick || mine) scrollDown();
  updateQueue();
}

/** Remove the oldest delivered rows beyond MAX_SHOWN, in one DOM operation. */
function trimRows() {
  const excess = chat.rows - MAX_SHOWN;
  if (excess <= 0) return;
  const first = /** @type {Element} */ (messagesEl.firstElementChild);
  let last = first;
  for (let i = 1; i < excess; i += 1) last = /** @type {Element} */ (last.nextElementSibling);
  const range = document.createRange();
  range.setStartBefore(first);
  range.setEndAfter(last);
  range.deleteContents();
  chat.rows = MAX_SHOWN;
}

function firstPending() {
  const first = chat.pending.values().next();
  return first.done ? null : first.value;
}

function nearBottom() {
  return messagesEl.scrollHeight - messagesEl.scrollTop - messagesEl.clientHeight < 80;
}

messagesEl.addEventListener("scroll", () => {
  chat.atBottom = nearBottom();
}, { passive: true });

function scrollDown() {
  // Past the end: the browser clamps it, and nothing is measured here.
  messagesEl.scrollTop = Number.MAX_SAFE_INTEGER;
}

/** @param {any} data */
function textOf(data) {
  if (data && typeof data === "object") return typeof data.text === "string" ? data.text : JSON.stringify(data);
  return String(data);
}

/**
 * Build one message's element.
 * @param {{user?: string, data: any, offset?: number, id?: string}} message
 * @param {boolean} pending
 */
function messageElement(message, pending) {
  const data = message.data && typeof message.data === "object" ? message.data : { text: String(message.data) };
  const user = message.user ?? "server";
  const name = typeof data.name === "string" && data.name ? data.name : message.user ? "someone" : "server";
  const li = document.createElement("li");
  li.className = "msg" + (user === me ? " mine" : "") + (pending ? " pending" : "") + (message.user ? "" : " system");
  if (message.offset !== undefined) li.dataset.offset = String(message.offset);
  if (message.id) li.dataset.id = message.id;
  const avatar = document.createElement("span");
  avatar.className = "avatar";
  avatar.textContent = (name.trim()[0] || "?").toUpperCase();
  avatar.style.setProperty("--h", String(hue(user)));
  const body = document.createElement("div");
  body.className = "msg-body";
  const meta = document.createElement("div");
  meta.className = "msg-meta";
  const who = document.createElement("b");
  who.textContent = name;
  const when = document.createElement("time");
  const at = typeof data.at === "number" ? new Date(data.at) : new Date();
  when.dateTime = at.toISOString();
  when.textContent = TIME_FORMAT.format(at);
  meta.append(who, when);
  if (pending) {
    const state = document.createElement("span");
    state.className = "msg-state";
    state.textContent = client.isConnected ? "sending…" : "queued";
    meta.append(state);
  }
  const text = document.createElement("p");
  text.className = "msg-text";
  text.textContent = textOf(data);
  body.append(meta, text);
  li.append(avatar, body);
  return li;
}

/**
 * @param {string} text
 * @param {string} tone
 */
function noticeElement(text, tone) {
  const li = document.createElement("li");
  li.className = "notice" + (tone ? ` ${tone}` : "");
  li.textContent = text;
  return li;
}

/**
 * Say why messages are missing: a new epoch means the server lost its history
 * (an in-memory server restarted); the same epoch means the history window ran out.
 * @param {import("/openline.js").Gap} gap
 */
function gapNotice(gap) {
  const [epoch, offset] = gap.since ?? [null, 0];
  if (epoch !== gap.epoch) {
    const lost = gap.first - 1; // the new epoch's messages that history no longer holds
    const what = lost > 0 ? `${lost === 1 ? "1 message" : `${lost} messages`} may be missing` : "messages sent meanwhile may be missing";
    return `The server restarted and lost its history: ${what}.`;
  }
  const lost = gap.first - offset - 1;
  const what = lost === 1 ? "1 message was" : `${lost} messages were`;
  return `${what[0].toUpperCase()}${what.slice(1)} too old to recover: the server's history window ran out.`;
}

function updateQueue() {
  const pending = chat.pending.size;
  const connected = client.isConnected;
  for (const li of chat.pending.values()) {
    const state = li.querySelector(".msg-state");
    if (state && !li.classList.contains("failed")) state.textContent = connected ? "sending…" : "queued";
  }
  queueEl.hidden = pending === 0 || connected || page.stopped;
  queueEl.textContent =
    pending === 1 ? "1 message waits for the connection" : `${pending} messages wait for the connection`;
  if (page.offline) badge.offline(pending);
}

/** @param {string} user */
function nameOf(user) {
  const member = room?.members.get(user);
  return member && typeof member.info.name === "string" ? member.info.name : "someone";
}

function renderMembers() {
  if (page.stopped) return;
  const members = [...room.members.values()].sort((a, b) =>
    a.user === me ? -1 : b.user === me ? 1 : String(a.info.name).localeCompare(String(b.info.name)),
  );
  membersEl.replaceChildren(
    ...members.map((member) => {
      const li = document.createElement("li");
      li.dataset.user = member.user;
      const dot = document.createElement("span");
      dot.className = "avatar small";
      dot.style.setProperty("--h", String(hue(member.user)));
      dot.textContent = (nameOf(member.user).trim()[0] || "?").toUpperCase();
      const name = document.createElement("span");
      name.className = "member-name";
      name.textContent = nameOf(member.user);
      li.append(dot, name);
      if (member.user === me) {
        const you = document.createElement("span");
        you.className = "you";
        you.textContent = "you";
        li.append(you);
      }
      if (member.state?.typing) li.classList.add("is-typing");
      return li;
    }),
  );
  $("#online-count").textContent = `${members.length} online`;
  renderTyping();
}

function renderTyping() {
  if (page.stopped) return;
  const typing = [...room.members.values()].filter((m) => m.user !== me && m.state?.typing).map((m) => nameOf(m.user));
  showTyping(typing);
}

/** @param {string[]} typing names of the people typing */
function showTyping(typing) {
  const inner = /** @type {HTMLElement} */ (typingEl.querySelector(".typing-inner"));
  const who = /** @type {HTMLElement} */ (typingEl.querySelector(".typing-who"));
  inner.hidden = typing.length === 0;
  typingEl.dataset.typing = typing.join(",");
  if (typing.length === 1) who.textContent = `${typing[0]} is typing`;
  else if (typing.length === 2) who.textContent = `${typing[0]} and ${typing[1]} are typing`;
  else if (typing.length > 2) who.textContent = `${typing.length} people are typing`;
}

// Typing: "typing" while keys come, renewed now and then (the hub expires a state
// after 5 s), cleared after a pause or when the message is sent.
let typingSince = 0;
/** @type {ReturnType<typeof setTimeout> | null} */
let typingIdle = null;

function typed() {
  if (!client?.isConnected) return;
  const nowMs = Date.now();
  if (input.value.trim() === "") {
    stopTyping();
    return;
  }
  if (nowMs - typingSince > TYPING_RENEW) {
    typingSince = nowMs;
    client.setState(ROOM, { typing: true });
  }
  if (typingIdle !== null) clearTimeout(typingIdle);
  typingIdle = setTimeout(stopTyping, TYPING_IDLE);
}

function stopTyping() {
  if (typingIdle !== null) clearTimeout(typingIdle);
  typingIdle = null;
  if (typingSince === 0) return;
  typingSince = 0;
  if (client.isConnected) client.setState(ROOM, null);
}

/** @param {string} name */
async function send(name) {
  const text = input.value.trim();
  if (!text || page.stopped) return;
  input.value = "";
  stopTyping();
  const id = `${tabId()}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  const data = { text, name, at: Date.now() };
  const li = messageElement({ user: me, data, id }, true);
  chat.pending.set(id, li);
  messagesEl.append(li);
  scrollDown();
  updateQueue();
  try {
    await client.publish(ROOM, data, { id });
  } catch (error) {
    li.classList.add("failed");
    const state = li.querySelector(".msg-state");
    if (state) state.textContent = `not sent: ${/** @type {Error} */ (error).message}`;
  }
}

// --- ticker and push vs polling -------------------------------------------------------

/** Server clock minus ours, in ms: estimated from the polls' round trips. */
const clock = { offset: 0, rtt: Infinity };
const serverNow = () => Date.now() + clock.offset;

/**
 * @typedef {{seq: number, price: number, change: number, ts: number, symbol: string}} Tick
 */

class Lane {
  /** @param {HTMLElement} el */
  constructor(el) {
    this.el = el;
    const q = (/** @type {string} */ s) => /** @type {HTMLElement} */ (el.querySelector(s));
    this.fields = {
      value: q(".lane-value"),
      age: q(".lane-age"),
      avgAge: q(".avg-age"),
      delay: q(".delay"),
      updates: q(".updates"),
      missed: q(".missed"),
      requests: q(".requests"),
      meter: q(".meter span"),
    };
    /** @type {Tick | null} */
    this.tick = null;
    /** What to show instead of the age: why there is no fresh value. @type {string | null} */
    this.status = null;
    this.updates = 0;
    this.missed = 0;
    this.requests = 0;
    this.delaySum = 0;
    this.delayCount = 0;
    this.ageSum = 0; // integral of the shown value's age over time (ms * ms)
    this.ageTime = 0;
    this.lastSample = 0;
  }

  /**
   * Show a value if it is newer than the one shown.
   * @param {Tick} tick
   * @param {number | null} delay ms from the tick's making to its arrival; null: not counted
   */
  offer(tick, delay) {
    // Newer means made later: a restarted server counts its ticks from 1 again.
    if (this.tick && (tick.ts < this.tick.ts || tick.seq === this.tick.seq)) return;
    if (this.tick && tick.seq > this.tick.seq + 1) this.missed += tick.seq - this.tick.seq - 1;
    if (delay !== null && this.tick) {
      this.delaySum += Math.max(0, delay);
      this.delayCount += 1;
    }
    this.updates += this.tick ? 1 : 0;
    this.tick = tick;
  }

  /** Accumulate the age of what is shown, for the time-averaged age. */
  sample() {
    const t = performance.now();
    if (this.tick && this.lastSample) {
      const dt = t - this.lastSample;
      this.ageSum += (serverNow() - this.tick.ts) * dt;
      this.ageTime += dt;
    }
    this.lastSample = t;
  }

  /**
   * Set an element's text only when it changes: an unchanged page needs no layout.
   * @param {HTMLElement} el
   * @param {string} text
   */
  static write(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  render() {
    const f = this.fields;
    const write = Lane.write;
    const age = this.tick ? Math.max(0, serverNow() - this.tick.ts) : null;
    const avgAge = this.ageTime > 0 ? this.ageSum / this.ageTime : null;
    const delay = this.delayCount > 0 ? this.delaySum / this.delayCount : null;
    write(f.value, this.tick ? this.tick.price.toFixed(2) : "—");
    write(f.age, this.status ?? (age === null ? "waiting…" : `${formatMs(age)} old`));
    write(f.avgAge, avgAge === null ? "—" : formatMs(avgAge));
    write(f.delay, delay === null ? "—" : formatMs(delay));
    write(f.updates, String(this.updates));
    write(f.missed, String(this.missed));
    write(f.requests, String(this.requests));
    // A transform, not a width: the meter moves without a layout.
    f.meter.style.transform = `scaleX(${age === null ? 0 : Math.min(1, age / 5000)})`;
    this.el.dataset.age = age === null ? "" : String(Math.round(age));
    this.el.dataset.avgAge = avgAge === null ? "" : String(Math.round(avgAge));
    this.el.dataset.delay = delay === null ? "" : String(Math.round(delay));
    this.el.dataset.updates = String(this.updates);
    this.el.dataset.requests = String(this.requests);
    this.el.dataset.stale = age !== null && age > 2000 ? "yes" : "no";
  }
}

/** @param {number} ms */
function formatMs(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10000 ? 1 : 0)} s`;
}

const lanes = {
  push: new Lane($("#lane-push")),
  fast: new Lane($("#lane-fast")),
  slow: new Lane($("#lane-slow")),
};
/** @type {number[]} */
const sparkline = [];

// What the page knows and does, for the pollers and the panels.
const page = {
  /** The browser said it lost the network (or the client did). */
  offline: typeof navigator !== "undefined" && navigator.onLine === false,
  /** The client stopped for good. */
  stopped: false,
  /** "unknown" until the server says whether it runs a ticker. @type {"unknown" | "on" | "off"} */
  ticker: /** @type {"unknown" | "on" | "off"} */ ("unknown"),
  /** Timers of the race: the clock and the pollers. @type {Set<ReturnType<typeof setTimeout>>} */
  timers: new Set(),
};

const POLL_BACKOFF_CAP = 30_000; // ms: the longest wait between two failed polls

/** Polls wait while they could only fail or nobody looks. */
function pollsPaused() {
  return page.offline || document.hidden || page.stopped || page.ticker === "off";
}

/**
 * One poll of `/api/ticker`. Answers whether it got a value.
 * @param {Lane} lane
 */
async function poll(lane) {
  lane.requests += 1;
  const sent = Date.now();
  let response;
  try {
    response = await fetch("/api/ticker", { cache: "no-store" });
  } catch {
    return false; // offline or the server is down: the value just gets older, which is the point
  }
  const value = await response.json().catch(() => null);
  if (!response.ok) {
    // The server runs no ticker: its first answer says so, and that is final.
    if (response.status === 404 && page.ticker === "unknown") tickerOff();
    return false;
  }
  const received = Date.now();
  const rtt = received - sent;
  if (typeof value.now === "number" && rtt <= clock.rtt) {
    // The server answered about halfway through the round trip.
    clock.rtt = rtt;
    clock.offset = value.now - (sent + received) / 2;
  }
  page.ticker = "on";
  lane.offer(value, lane.tick !== null ? serverNow() - value.ts : null);
  return true;
}

/**
 * Poll every `every` ms; after failures wait twice as long each time (up to
 * POLL_BACKOFF_CAP), and say so once in the lane rather than once per failure.
 * @param {Lane} lane
 * @param {number} every ms
 */
function startPolling(lane, every) {
  let failures = 0;
  const run = async () => {
    if (pollsPaused()) {
      lane.status = page.ticker === "off" ? null : page.stopped ? "stopped" : "paused";
      later(run, every);
      return;
    }
    const ok = await poll(lane);
    failures = ok ? 0 : failures + 1;
    const wait = failures === 0 ? every : Math.min(POLL_BACKOFF_CAP, every * 2 ** failures);
    lane.status = failures === 0 ? null : `unreachable · next try in ${formatMs(wait)}`;
    if (page.ticker !== "off" && !page.stopped) later(run, wait);
  };
  run();
}

/**
 * A timer the race owns: stopped with it.
 * @param {() => void} run
 * @param {number} ms
 */
function later(run, ms) {
  if (page.stopped || page.ticker === "off") return;
  const timer = setTimeout(() => {
    page.timers.delete(timer);
    run();
  }, ms);
  page.timers.add(timer);
}

/** Nothing polls again; the race's timers stop. */
function stopRace() {
  for (const timer of page.timers) clearTimeout(timer);
  page.timers.clear();
}

/**
 * The server runs no ticker (`openline serve --no-ticker`): hide its panels
 * and stop asking for good.
 */
function tickerOff() {
  page.ticker = "off";
  stopRace();
  document.body.classList.add("no-ticker");
  for (const id of ["#ticker", "#race"]) $(id).hidden = true;
  if (client?.subscriptions.has(TICKER)) client.unsubscribe(TICKER);
}

/**
 * Ask `/healthz` once whether the server runs a ticker, so that a server
 * without one never gets a `/api/ticker` request. Any failure leaves it to the
 * first poll's answer.
 */
async function learnTicker() {
  try {
    const response = await fetch("/healthz", { cache: "no-store" });
    const health = await response.json();
    if (health && "ticker" in health) {
      if (health.ticker === null) tickerOff();
      else page.ticker = "on";
    }
  } catch {
    // unknown: the first poll tells
  }
}

/** @param {import("/openline.js").Publication} message */
function onTick(message) {
  const tick = /** @type {Tick} */ (message.data);
  // The delay counts from the tick's making to its arrival here, on the server's
  // clock as estimated from the polls, whenever the page gets to draw it.
  const delay = !message.replayed && lanes.push.tick !== null ? serverNow() - tick.ts : null;
  lanes.push.offer(tick, delay);
  $("#price").textContent = tick.price.toFixed(2);
  $("#ticker-symbol").textContent = tick.symbol;
  const change = $("#change");
  change.dataset.dir = tick.change > 0 ? "up" : tick.change < 0 ? "down" : "flat";
  change.textContent = `${tick.change > 0 ? "▲" : tick.change < 0 ? "▼" : "■"} ${Math.abs(tick.change).toFixed(2)}`;
  sparkline.push(tick.price);
  if (sparkline.length > SPARK_POINTS) sparkline.shift();
  drawSpark();
}

function drawSpark() {
  const low = Math.min(...sparkline);
  const high = Math.max(...sparkline);
  const span = high - low || 1;
  const step = 300 / (SPARK_POINTS - 1);
  const offset = SPARK_POINTS - sparkline.length;
  const points = sparkline.map((p, i) => `${((offset + i) * step).toFixed(1)},${(56 - ((p - low) / span) * 52).toFixed(1)}`);
  /** @type {SVGPolylineElement} */ (document.querySelector("#spark polyline")).setAttribute("points", points.join(" "));
}

async function startRace() {
  await learnTicker();
  if (page.ticker === "off" || page.stopped) return;
  const started = performance.now();
  startPolling(lanes.fast, 200);
  startPolling(lanes.slow, 5000);
  const clockTick = () => {
    for (const lane of Object.values(lanes)) {
      lane.sample();
      lane.render();
    }
    $("#race-clock").textContent = `${Math.round((performance.now() - started) / 1000)} s`;
    later(clockTick, 100);
  };
  clockTick();
}

// --- honest states: offline and stopped ------------------------------------------------

function wentOffline() {
  page.offline = true;
  badge.offline(chat.pending.size);
  updateQueue();
}

function cameOnline() {
  if (!page.offline) return;
  page.offline = false;
  if (page.stopped) return;
  if (client.isConnected) badge.live();
  else badge.set("reconnecting", "reconnecting…");
  updateQueue();
}

/**
 * What a close code that stops the client means for the person reading the page.
 * @param {number | null | undefined} code
 */
function stopReason(code) {
  if (code === 1008) return "The server closed the connection for breaking its rules (1008: too many bad requests).";
  if (code === 1009) return "The server closed the connection because a message was too big (1009).";
  if (code === 1003) return "The server closed the connection: it can't handle what was sent (1003).";
  if (typeof code === "number") return `The server closed the connection with code ${code} and asked not to reconnect.`;
  return "The connection stopped and won't reconnect by itself.";
}

/**
 * The client stopped for good: clear what would be stale, freeze the ticker,
 * disable input, and say what happened and what to do.
 * @param {{code?: number | null, reason?: string, error?: Error}} stop
 */
function stopped(stop) {
  if (page.stopped) return;
  page.stopped = true;
  stopRace();
  stopTyping();
  badge.stopped();
  membersEl.replaceChildren();
  $("#online-count").textContent = "not connected";
  $("#watching").textContent = "— watching";
  showTyping([]);
  input.disabled = sendButton.disabled = true;
  input.placeholder = "Disconnected: reload the page to chat again";
  queueEl.hidden = true;
  for (const id of ["#ticker", "#race"]) $(id).classList.add("frozen");
  for (const lane of Object.values(lanes)) {
    lane.status = "stopped";
    lane.render();
  }
  const box = $("#stopped");
  /** @type {HTMLElement} */ (box.querySelector(".stopped-why")).textContent = stopReason(stop.code);
  /** @type {HTMLElement} */ (box.querySelector(".stopped-detail")).textContent = stop.reason ?? stop.error?.message ?? "";
  box.hidden = false;
  showNotice(`Stopped: ${stop.error?.message ?? stop.reason ?? "the connection ended"}`, "error");
}

/**
 * Listen for the client's stops and network changes. Today's client reports a
 * stop as an `error` event with `fatal`; a `stopped` event ({code, reason, error})
 * and `offline` / `online` events are handled too when the client has them.
 * @param {Client} c
 */
function watchClient(c) {
  c.on("error", ({ error, fatal }) => {
    if (fatal) stopped({ code: /** @type {any} */ (error).closeCode ?? null, reason: error.message, error });
  });
  const on = /** @type {(type: string, listener: (detail: any) => void) => void} */ (c.on.bind(c));
  on("stopped", (detail) => stopped(detail));
  on("offline", wentOffline);
  on("online", cameOnline);
  window.addEventListener("offline", wentOffline);
  window.addEventListener("online", cameOnline);
}

// --- wiring --------------------------------------------------------------------------

/** @param {string} name */
function join(name) {
  me = sessionStorage.getItem("openline-demo-user") ?? "";
  sessionStorage.setItem("openline-demo-name", name);
  localStorage.setItem("openline-demo-last-name", name);
  $("#join").hidden = true;
  document.body.classList.add("joined");

  const heartbeat = Number(params.get("heartbeat")) || 10;
  client = new Client("/ws", { token: () => sessionToken(name), heartbeatInterval: heartbeat, heartbeatTimeout: heartbeat });
  let everConnected = false;
  let resumedCount = 0;
  client.on("statechange", ({ state }) => {
    if (page.stopped) return;
    if (page.offline || state === "offline") {
      badge.stopTimers(); // no countdown: nothing is dialled until the network is back
      badge.offline(chat.pending.size);
    } else if (state === "connecting") {
      badge.set(everConnected ? "reconnecting" : "connecting", everConnected ? "reconnecting…" : "connecting…");
    } else if (state === "closed") {
      badge.stopTimers();
      badge.set("stopped", "disconnected");
    }
    updateQueue();
  });
  client.on("connected", () => {
    if (page.offline) cameOnline(); // a connection proves the network is back
    if (!everConnected) badge.live();
    everConnected = true;
    resumedCount = 0;
    updateQueue();
  });
  client.on("reconnecting", ({ at }) => {
    if (page.offline) badge.offline(chat.pending.size);
    else badge.countdown(at);
    updateQueue();
  });
  client.on("resumed", ({ ch, recovered, gap }) => {
    if (ch !== ROOM) return;
    resumedCount += recovered;
    badge.resumed(resumedCount, gap);
  });
  watchClient(client);

  room = client.subscribe(ROOM, { presence: true, history: true });
  room.on("message", showMessage);
  room.on("gap", (gap) => showNotice(gapNotice(gap), "warn"));
  room.on("presence", renderMembers);
  room.on("join", ({ user }) => {
    renderMembers();
    if (user !== me) showNotice(`${nameOf(user)} joined`);
  });
  room.on("leave", ({ user }) => {
    const name = membersEl.querySelector(`[data-user="${CSS.escape(user)}"] .member-name`)?.textContent ?? "someone";
    renderMembers();
    showNotice(`${name} left`);
  });
  room.on("state", renderMembers);

  const ticker = page.ticker === "off" ? null : client.subscribe(TICKER, { presence: true });
  ticker?.on("message", onTick);
  ticker?.on("presence", ({ count }) => {
    if (!page.stopped) $("#watching").textContent = `${count} watching`;
  });

  input.disabled = false;
  sendButton.disabled = false;
  composer.addEventListener("submit", (event) => {
    event.preventDefault();
    send(name);
  });
  input.addEventListener("input", typed);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) for (const lane of Object.values(lanes)) lane.render();
  });
  $("#reload").addEventListener("click", () => location.reload());
  client.start();
  startRace();
  input.focus();
  Object.assign(window, { demo: { client, room, ticker, lanes, chat, page } });
}

function prompt() {
  const given = params.get("name") ?? sessionStorage.getItem("openline-demo-name");
  if (given && given.trim()) {
    join(given.trim().slice(0, 32));
    return;
  }
  const nameInput = /** @type {HTMLInputElement} */ ($("#name"));
  nameInput.value =
    localStorage.getItem("openline-demo-last-name") ?? SUGGESTIONS[Math.floor(Math.random() * SUGGESTIONS.length)];
  nameInput.select();
  $("#join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = nameInput.value.trim().slice(0, 32);
    if (name) join(name);
  });
}

// Show the race even before joining: it needs no name.
for (const lane of Object.values(lanes)) lane.render();
prompt();
