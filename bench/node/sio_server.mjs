// Socket.IO on Node, the hub's peer in `openline bench --hub`: one node per process.
//
//   node bench/node/sio_server.mjs '{"redis": "redis://127.0.0.1:PORT", "prefix": "..."}'
//
// Serves socket.io on 127.0.0.1 and a free port; with "redis", through
// @socket.io/redis-adapter, so that nodes on the same Redis and key prefix form
// one cluster. The application does what the hub does in the benchmark:
// "join" enters the room "bench" and answers "joined"; "publish" emits its
// argument to the room as "msg". Everything else is socket.io's defaults.
// Prints `READY {"port": N}` once it listens; stops on SIGTERM or SIGINT.

import { createServer } from "node:http";
import { Server } from "socket.io";

const config = JSON.parse(process.argv[2] || "{}");
const ROOM = "bench";

async function adapter() {
  if (!config.redis) return undefined;
  const { createClient } = await import("redis");
  const { createAdapter } = await import("@socket.io/redis-adapter");
  const pub = createClient({ url: config.redis });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  return createAdapter(pub, sub, { key: config.prefix || "socket.io" });
}

const http = createServer();
const io = new Server(http, { adapter: await adapter() });

io.on("connection", (socket) => {
  socket.on("join", () => {
    socket.join(ROOM);
    socket.emit("joined");
  });
  socket.on("publish", (data) => {
    io.to(ROOM).emit("msg", data);
  });
});

http.listen(0, "127.0.0.1", 4096, () => {
  process.stdout.write(`READY ${JSON.stringify({ port: http.address().port })}\n`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => process.exit(0));
}
