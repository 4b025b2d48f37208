// A scripted client built on the `ws` package, for openline's interop tests.
//
// Usage: node ws_client.mjs URL [--deflate] [--deflate-options JSON] [--ca FILE]
//                               [--protocol NAME]... [--max-payload BYTES] [--timeout MS]
//                               [--script JSON]
//
// --deflate-options takes ws's perMessageDeflate options as a JSON object, such as
// {"clientNoContextTakeover": true}; it implies --deflate. Every message is
// compressed, however small.
//
// The script is a JSON array of steps, from --script or else from stdin. The client
// runs the steps in order, then prints one JSON object on stdout:
//   {"ok": true|false, "extensions": "...", "protocol": "...", "steps": [...],
//    "close": {"code": N, "reason": "..."} or null, "error": "..." or null}
// and exits with 0 when every step succeeded, 1 otherwise.
//
// Steps:
//   {"op": "send", "type": "text"|"binary", <payload>, "echo": true}
//       Send one message, then (unless "echo" is false) wait for the next message
//       and check that it has the same type and bytes. The payload is one of
//         "data": a string (text) or base64 (binary);
//         "size": N, a generated payload of N characters (text) or N bytes (binary);
//         "fragments": [base64, ...], raw pieces sent as one fragmented message with
//                      ws's `fin` option; text pieces may cut a character in two.
//   {"op": "receive", "type": ..., "data": ...}
//       Wait for the next message and check its type and payload (as in "send").
//   {"op": "ping", "data": base64}   Send a ping and wait for the matching pong.
//   {"op": "close", "code": N, "reason": "..."}
//       Start the closing handshake and wait until the connection is closed.
//   {"op": "wait_close"}             Wait until the server closes the connection.
// Each step's result records the message type, length, SHA-256 and "ok".

import crypto from "node:crypto";
import fs from "node:fs";
import { parseArgs } from "node:util";

import WebSocket from "ws";

const { values: options, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    deflate: { type: "boolean", default: false },
    "deflate-options": { type: "string" },
    ca: { type: "string" },
    protocol: { type: "string", multiple: true, default: [] },
    "max-payload": { type: "string", default: String(64 << 20) },
    timeout: { type: "string", default: "30000" },
    script: { type: "string" },
  },
});

// BMP-only, so that slicing by UTF-16 code units never splits a character.
const TEXT_PATTERN = "openline ✓ héllo wörld — ünïcödé ∑ ";

function generateText(size) {
  return TEXT_PATTERN.repeat(Math.ceil(size / TEXT_PATTERN.length)).slice(0, size);
}

// A random block repeated: every byte value appears, yet deflate stays quick.
function generateBinary(size) {
  const block = crypto.randomBytes(4096);
  const buffer = Buffer.allocUnsafe(size);
  for (let offset = 0; offset < size; offset += block.length) block.copy(buffer, offset);
  return buffer;
}

// The payload of a "send" or "receive" step as a Buffer, plus what ws.send() takes.
function payloadOf(step) {
  const isBinary = step.type === "binary";
  if (step.fragments !== undefined) {
    const pieces = step.fragments.map((piece) => Buffer.from(piece, "base64"));
    return { bytes: Buffer.concat(pieces), pieces, isBinary };
  }
  let value;
  if (step.size !== undefined) {
    value = isBinary ? generateBinary(step.size) : generateText(step.size);
  } else {
    value = isBinary ? Buffer.from(step.data ?? "", "base64") : (step.data ?? "");
  }
  const bytes = isBinary ? value : Buffer.from(value, "utf8");
  return { bytes, pieces: [value], isBinary };
}

function describe(bytes, isBinary) {
  const digest = crypto.createHash("sha256").update(bytes).digest("hex");
  return { type: isBinary ? "binary" : "text", length: bytes.length, sha256: digest };
}

// Turns ws's events into awaitable queues.
class Inbox {
  constructor(ws) {
    this.messages = [];
    this.pongs = [];
    this.waiters = [];
    this.closed = null;
    ws.on("message", (data, isBinary) => this.push(this.messages, { data, isBinary }));
    ws.on("pong", (data) => this.push(this.pongs, data));
    ws.on("close", (code, reason) => {
      this.closed = { code, reason: reason.toString("utf8") };
      this.wake();
    });
  }

  push(queue, item) {
    queue.push(item);
    this.wake();
  }

  wake() {
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter();
  }

  // Resolves with the next item of `queue`, or with null once the connection is closed.
  async next(queue) {
    while (queue.length === 0 && this.closed === null) {
      await new Promise((resolve) => this.waiters.push(resolve));
    }
    return queue.length > 0 ? queue.shift() : null;
  }

  async untilClosed() {
    while (this.closed === null) await new Promise((resolve) => this.waiters.push(resolve));
    return this.closed;
  }
}

async function receiveAndCompare(inbox, expected) {
  const message = await inbox.next(inbox.messages);
  if (message === null) return { ok: false, error: "connection closed before a message arrived" };
  const bytes = Buffer.isBuffer(message.data) ? message.data : Buffer.concat(message.data);
  const ok = message.isBinary === expected.isBinary && bytes.equals(expected.bytes);
  return { ok, ...describe(bytes, message.isBinary) };
}

async function runStep(ws, inbox, step) {
  switch (step.op) {
    case "send": {
      const payload = payloadOf(step);
      payload.pieces.forEach((piece, index) => {
        ws.send(piece, { binary: payload.isBinary, fin: index === payload.pieces.length - 1 });
      });
      if (step.echo === false) return { ok: true, ...describe(payload.bytes, payload.isBinary) };
      return receiveAndCompare(inbox, payload);
    }
    case "receive":
      return receiveAndCompare(inbox, payloadOf(step));
    case "ping": {
      const data = Buffer.from(step.data ?? "", "base64");
      ws.ping(data);
      const pong = await inbox.next(inbox.pongs);
      return { ok: pong !== null && pong.equals(data), pong: pong?.toString("base64") ?? null };
    }
    case "close":
      ws.close(step.code, step.reason);
      return { ok: true, ...(await inbox.untilClosed()) };
    case "wait_close":
      return { ok: true, ...(await inbox.untilClosed()) };
    default:
      throw new Error(`unknown step: ${JSON.stringify(step)}`);
  }
}

function perMessageDeflate() {
  const extra = options["deflate-options"];
  if (extra !== undefined) return { threshold: 0, ...JSON.parse(extra) };
  return options.deflate ? { threshold: 0 } : false;
}

async function readScript() {
  if (options.script !== undefined) return JSON.parse(options.script);
  return JSON.parse(fs.readFileSync(0, "utf8"));
}

async function main() {
  if (positionals.length !== 1) throw new Error("expected exactly one URL argument");
  const script = await readScript();
  const report = { ok: false, extensions: null, protocol: null, steps: [], close: null, error: null };
  const ws = new WebSocket(positionals[0], options.protocol, {
    ca: options.ca === undefined ? undefined : fs.readFileSync(options.ca),
    maxPayload: Number(options["max-payload"]),
    perMessageDeflate: perMessageDeflate(),
  });
  const inbox = new Inbox(ws);
  const timer = setTimeout(() => {
    report.error = `timed out after ${options.timeout} ms`;
    ws.terminate();
  }, Number(options.timeout));

  try {
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    ws.on("error", (error) => {
      report.error ??= error.message;
    });
    report.extensions = ws.extensions;
    report.protocol = ws.protocol;
    for (const step of script) {
      const result = await runStep(ws, inbox, step);
      report.steps.push({ op: step.op, ...result });
      if (!result.ok) break;
    }
    if (ws.readyState !== WebSocket.CLOSED) ws.close(1000);
    report.close = await inbox.untilClosed();
  } catch (error) {
    report.error ??= error.message;
  } finally {
    clearTimeout(timer);
  }
  report.ok =
    report.error === null &&
    report.steps.length === script.length &&
    report.steps.every((step) => step.ok);
  process.stdout.write(JSON.stringify(report) + "\n");
  process.exitCode = report.ok ? 0 : 1;
}

await main();
