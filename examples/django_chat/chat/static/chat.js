// The chat page: one openline.js client, one room, history on arrival.
//
// The hub knows who we are from the session cookie the browser sends with the
// WebSocket handshake (same origin), so no token is needed here. After a lost
// line the client redials by itself and resumes the room from its last offset:
// nothing is shown twice and nothing is missed.
import { Client } from "/openline.js";

const ROOM = "room:lobby";
const list = /** @type {HTMLUListElement} */ (document.querySelector("#messages"));
const input = /** @type {HTMLInputElement} */ (document.querySelector("#text"));

const client = new Client("/ws");
client.on("statechange", ({ state }) => {
  document.body.dataset.state = state;
  document.querySelector("#state").textContent = state;
});
client.on("connected", ({ user }) => {
  document.querySelector("#me").textContent = `as ${user}`;
});
client.on("stopped", ({ reason }) => notice(`disconnected for good: ${reason}`));

const room = client.subscribe(ROOM, { history: true });
room.on("message", (message) => {
  const item = document.createElement("li");
  item.className = "msg";
  item.dataset.offset = String(message.offset);
  const user = document.createElement("span");
  user.className = "user";
  user.textContent = message.user ?? "?";
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = String(message.data?.text ?? "");
  item.append(user, text);
  list.append(item);
});
room.on("gap", () => notice("some messages are no longer in the history"));

document.querySelector("#send").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (!text) return;
  input.value = "";
  // Queued while offline, sent once after a redial: the ack settles the promise.
  client.publish(ROOM, { text }).catch((error) => notice(`not sent: ${error.message}`));
});

/** @param {string} text */
function notice(text) {
  const item = document.createElement("li");
  item.className = "notice";
  item.textContent = text;
  list.append(item);
}

// For the browser's console (and the example's tests): the client and its state.
Object.assign(globalThis, { chat: client });
client.start();
