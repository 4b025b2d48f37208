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
const MAX_SHOWN = 500; // messages kept on screen
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
};

// --- chat ----------------------------------------------------------------------------

const messagesEl = /** @type {HTMLOListElement} */ ($("#messages"));
const membersEl = $("#members");
const typingEl = $("#typing");
const composer = /** @type {HTMLFormElement} */ ($("#composer"));
const input = /** @type {HTMLInputElement} */ ($("#text"));
const queueEl = $("#queue");

/** @type {Client} */
let client;
/** @type {import("/openline.js").Subscription} */
let room;
let me = "";

function nearBottom() {
  return messagesEl.scrollHeight - messagesEl.scrollTop - messagesEl.clientHeight < 80;
}

function scrollDown() {
  messagesEl.scrollTop = messagesEl.scrollHeight;
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
  when.textContent = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  meta.append(who, when);
  if (pending) {
    const state = document.createElement("span");
    state.className = "msg-state";
    state.textContent = client.isConnected ? "sending…" : "queued";
    meta.append(state);
  }
  const text = document.createElement("p");
  text.className = "msg-text";
  text.textContent = typeof data.text === "string" ? data.text : JSON.stringify(data);
  body.append(meta, text);
  li.append(avatar, body);
  return li;
}

/** @param {import("/openline.js").Publication} message */
function showMessage(message) {
  const stick = nearBottom();
  const li = messageElement(message, false);
  if (message.id) messagesEl.querySelector(`.pending[data-id="${CSS.escape(message.id)}"]`)?.remove();
  const firstPending = messagesEl.querySelector(".pending");
  messagesEl.insertBefore(li, firstPending);
  while (messagesEl.querySelectorAll(".msg:not(.pending)").length > MAX_SHOWN) {
    messagesEl.querySelector(".msg:not(.pending)")?.remove();
  }
  if (stick || message.user === me) scrollDown();
  updateQueue();
}

/** @param {string} text */
function showNotice(text, kind = "") {
  const stick = nearBottom();
  const li = document.createElement("li");
  li.className = "notice " + kind;
  li.textContent = text;
  messagesEl.insertBefore(li, messagesEl.querySelector(".pending"));
  if (stick) scrollDown();
}

function updateQueue() {
  const pending = messagesEl.querySelectorAll(".pending").length;
  for (const state of messagesEl.querySelectorAll(".pending .msg-state")) {
    state.textContent = client.isConnected ? "sending…" : "queued";
  }
  queueEl.hidden = pending === 0 || client.isConnected;
  queueEl.textContent =
    pending === 1 ? "1 message waits for the connection" : `${pending} messages wait for the connection`;
}

/** @param {string} user */
function nameOf(user) {
  const member = room?.members.get(user);
  return member && typeof member.info.name === "string" ? member.info.name : "someone";
}

function renderMembers() {
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
  const typing = [...room.members.values()].filter((m) => m.user !== me && m.state?.typing).map((m) => nameOf(m.user));
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
  if (!text) return;
  input.value = "";
  stopTyping();
  const id = `${tabId()}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  const data = { text, name, at: Date.now() };
  const li = messageElement({ user: me, data, id }, true);
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
    /** @type {Tick | null} */
    this.tick = null;
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
   * @param {boolean} measure whether its delay counts (not the first value, not a replay)
   */
  offer(tick, measure) {
    // Newer means made later: a restarted server counts its ticks from 1 again.
    if (this.tick && (tick.ts < this.tick.ts || tick.seq === this.tick.seq)) return;
    if (this.tick && tick.seq > this.tick.seq + 1) this.missed += tick.seq - this.tick.seq - 1;
    if (measure && this.tick) {
      this.delaySum += Math.max(0, serverNow() - tick.ts);
      this.delayCount += 1;
    }
    this.updates += this.tick ? 1 : 0;
    this.tick = tick;
    this.render();
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

  render() {
    const q = (/** @type {string} */ s) => /** @type {HTMLElement} */ (this.el.querySelector(s));
    const age = this.tick ? Math.max(0, serverNow() - this.tick.ts) : null;
    const avgAge = this.ageTime > 0 ? this.ageSum / this.ageTime : null;
    const delay = this.delayCount > 0 ? this.delaySum / this.delayCount : null;
    q(".lane-value").textContent = this.tick ? this.tick.price.toFixed(2) : "—";
    q(".lane-age").textContent = age === null ? "waiting…" : `${formatMs(age)} old`;
    q(".avg-age").textContent = avgAge === null ? "—" : formatMs(avgAge);
    q(".delay").textContent = delay === null ? "—" : formatMs(delay);
    q(".updates").textContent = String(this.updates);
    q(".missed").textContent = String(this.missed);
    q(".requests").textContent = String(this.requests);
    const meter = q(".meter span");
    meter.style.width = age === null ? "0" : `${Math.min(100, (age / 5000) * 100)}%`;
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

/** @param {Lane} lane */
async function poll(lane) {
  lane.requests += 1;
  const sent = Date.now();
  try {
    const response = await fetch("/api/ticker", { cache: "no-store" });
    if (!response.ok) return;
    const value = await response.json();
    const received = Date.now();
    const rtt = received - sent;
    if (typeof value.now === "number" && rtt <= clock.rtt) {
      // The server answered about halfway through the round trip.
      clock.rtt = rtt;
      clock.offset = value.now - (sent + received) / 2;
    }
    lane.offer(value, lane.tick !== null);
  } catch {
    // offline: the lane's value just gets older, which is the point
  } finally {
    lane.render();
  }
}

/** @param {Lane} lane @param {number} every ms */
function startPolling(lane, every) {
  const run = () => {
    poll(lane);
    setTimeout(run, every);
  };
  run();
}

/** @param {import("/openline.js").Publication} message */
function onTick(message) {
  const tick = /** @type {Tick} */ (message.data);
  lanes.push.offer(tick, !message.replayed && lanes.push.tick !== null);
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

function startRace() {
  const started = performance.now();
  startPolling(lanes.fast, 200);
  startPolling(lanes.slow, 5000);
  setInterval(() => {
    for (const lane of Object.values(lanes)) {
      lane.sample();
      lane.render();
    }
    $("#race-clock").textContent = `${Math.round((performance.now() - started) / 1000)} s`;
  }, 100);
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
    if (state === "connecting") badge.set(everConnected ? "reconnecting" : "connecting", everConnected ? "reconnecting…" : "connecting…");
    if (state === "offline") {
      badge.stopTimers(); // no countdown: nothing is dialled until the network is back
      badge.set("reconnecting", "offline: waiting for the network…");
    }
    if (state === "closed") {
      badge.stopTimers();
      badge.set("stopped", "disconnected");
    }
    input.disabled = state === "closed";
    updateQueue();
  });
  client.on("connected", () => {
    if (!everConnected) badge.live();
    everConnected = true;
    resumedCount = 0;
    updateQueue();
  });
  client.on("reconnecting", ({ at }) => {
    badge.countdown(at);
    updateQueue();
  });
  client.on("resumed", ({ ch, recovered, gap }) => {
    if (ch !== ROOM) return;
    resumedCount += recovered;
    badge.resumed(resumedCount, gap);
  });
  client.on("error", ({ error, fatal }) => {
    if (fatal) showNotice(`Stopped: ${error.message}`, "error");
  });

  room = client.subscribe(ROOM, { presence: true, history: true });
  room.on("message", showMessage);
  room.on("gap", () => showNotice("Some messages were too old to recover.", "warn"));
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

  const ticker = client.subscribe(TICKER, { presence: true });
  ticker.on("message", onTick);
  ticker.on("presence", ({ count }) => {
    $("#watching").textContent = `${count} watching`;
  });

  input.disabled = false;
  /** @type {HTMLButtonElement} */ (composer.querySelector("button")).disabled = false;
  composer.addEventListener("submit", (event) => {
    event.preventDefault();
    send(name);
  });
  input.addEventListener("input", typed);
  client.start();
  startRace();
  input.focus();
  Object.assign(window, { demo: { client, room, ticker, lanes } });
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
