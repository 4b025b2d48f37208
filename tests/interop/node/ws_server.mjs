// An echo server built on the `ws` package, for openline's interop tests.
//
// Usage: node ws_server.mjs [--deflate] [--deflate-options JSON] [--cert FILE --key FILE]
//                           [--protocols A,B] [--max-payload BYTES] [--exit-on-stdin-close]
//
// It listens on 127.0.0.1 and an ephemeral port, then writes JSON lines to stdout:
// first {"event": "listening", "port": N}, then one line per connection event
// ("open", "ping", "pong", "close", "error"), tagged with the `id` query parameter
// of the request URL so that a test can find its own connection.
//
// What a connection does depends on the request path:
//   /echo       echo every message as one frame (any unknown path does the same);
//   /fragments  echo every message split into three frames, cutting the UTF-8 of text
//               at byte offsets, which may fall inside a character (RFC 6455 allows it);
//   /close      close with the {"code", "reason"} of the first (JSON text) message;
//               {} closes without a status code, as ws.close() does;
//   /ping       send a ping at once, and answer its pong with the text
//               {"pong": <payload as text>}; then echo.
//
// --protocols lists the subprotocols the server supports, most preferred first; it
// picks the first of them that the client offers.
//
// --deflate-options takes ws's perMessageDeflate options as a JSON object, such as
// {"serverNoContextTakeover": true, "serverMaxWindowBits": 9}; it implies --deflate.
//
// Options may also come from the environment: OPENLINE_WS_DEFLATE=1,
// OPENLINE_WS_DEFLATE_OPTIONS, OPENLINE_WS_CERT, OPENLINE_WS_KEY, OPENLINE_WS_PROTOCOLS,
// OPENLINE_WS_MAX_PAYLOAD. The process exits on SIGTERM, and with
// --exit-on-stdin-close also when its stdin closes, so that a test run that dies
// leaves no server behind.

import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import { parseArgs } from "node:util";

import { WebSocketServer } from "ws";

const env = process.env;
const { values: options } = parseArgs({
  options: {
    deflate: { type: "boolean", default: env.OPENLINE_WS_DEFLATE === "1" },
    "deflate-options": { type: "string", default: env.OPENLINE_WS_DEFLATE_OPTIONS },
    cert: { type: "string", default: env.OPENLINE_WS_CERT },
    key: { type: "string", default: env.OPENLINE_WS_KEY },
    protocols: { type: "string", default: env.OPENLINE_WS_PROTOCOLS ?? "" },
    "max-payload": { type: "string", default: env.OPENLINE_WS_MAX_PAYLOAD ?? String(64 << 20) },
    "exit-on-stdin-close": { type: "boolean", default: false },
  },
});

const PING_PAYLOAD = "openline-ping";

function log(record) {
  process.stdout.write(JSON.stringify(record) + "\n");
}

function createHttpServer() {
  if (options.cert === undefined && options.key === undefined) {
    return http.createServer();
  }
  if (options.cert === undefined || options.key === undefined) {
    throw new Error("--cert and --key go together");
  }
  return https.createServer({
    cert: fs.readFileSync(options.cert),
    key: fs.readFileSync(options.key),
  });
}

// Three pieces of roughly equal size; empty pieces are fine, and an empty
// message still yields three (empty) frames.
function splitInThree(buffer) {
  const third = Math.ceil(buffer.length / 3);
  return [buffer.subarray(0, third), buffer.subarray(third, 2 * third), buffer.subarray(2 * third)];
}

function sendFragmented(ws, data, isBinary) {
  const pieces = splitInThree(data);
  pieces.forEach((piece, index) => {
    ws.send(piece, { binary: isBinary, fin: index === pieces.length - 1 });
  });
}

function handleConnection(ws, request) {
  const url = new URL(request.url, "http://localhost");
  const id = url.searchParams.get("id") ?? "";
  const path = url.pathname;
  log({ event: "open", id, path, extensions: ws.extensions, protocol: ws.protocol });

  let closeRequested = false;
  ws.on("message", (data, isBinary) => {
    if (path === "/close" && !closeRequested) {
      closeRequested = true;
      const { code, reason } = JSON.parse(data.toString("utf8"));
      ws.close(code, reason);
    } else if (path === "/fragments") {
      sendFragmented(ws, data, isBinary);
    } else {
      ws.send(data, { binary: isBinary });
    }
  });
  ws.on("ping", (data) => log({ event: "ping", id, data: data.toString("base64") }));
  ws.on("pong", (data) => {
    log({ event: "pong", id, data: data.toString("base64") });
    if (path === "/ping") ws.send(JSON.stringify({ pong: data.toString("utf8") }));
  });
  ws.on("close", (code, reason) => log({ event: "close", id, code, reason: reason.toString("utf8") }));
  ws.on("error", (error) => log({ event: "error", id, message: error.message }));

  if (path === "/ping") ws.ping(PING_PAYLOAD);
}

// Compress every message, however small, so that each one crosses the extension.
function perMessageDeflate() {
  const extra = options["deflate-options"];
  if (extra !== undefined) return { threshold: 0, ...JSON.parse(extra) };
  return options.deflate ? { threshold: 0 } : false;
}

const supportedProtocols = options.protocols.split(",").filter((name) => name !== "");

// ws passes the client's offers as a Set; returning false selects no subprotocol.
function selectProtocol(offered) {
  return supportedProtocols.find((name) => offered.has(name)) ?? false;
}

const server = createHttpServer();
const wss = new WebSocketServer({
  server,
  maxPayload: Number(options["max-payload"]),
  perMessageDeflate: perMessageDeflate(),
  handleProtocols: selectProtocol,
});
wss.on("connection", handleConnection);

server.listen(0, "127.0.0.1", () => {
  log({ event: "listening", port: server.address().port, tls: options.cert !== undefined });
});

function shutdown() {
  for (const client of wss.clients) client.terminate();
  server.close(() => process.exit(0));
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
if (options["exit-on-stdin-close"]) {
  process.stdin.on("end", shutdown);
  process.stdin.resume();
}
