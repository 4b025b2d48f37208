"""Drive the sans-I/O core by hand: two Connections talk through plain bytes, no sockets."""

from openline.protocol.connection import Connection, Side
from openline.protocol.events import Close, TextMessage


def pump(source: Connection, target: Connection) -> None:
    """Carry what ``source`` wants to send to ``target``, as a socket would."""
    for data in source.data_to_send():
        if data:
            target.receive_data(data)
        else:  # an empty item means "half-close now"
            target.receive_eof()


client, server = Connection(Side.CLIENT), Connection(Side.SERVER)

client.send_text("hello")
pump(client, server)
for event in server.events_received():
    if isinstance(event, TextMessage):
        print(f"server got {event.data!r}")
        server.send_text(event.data.upper())
pump(server, client)
print(f"client got {client.events_received()}")

client.send_close(1000, "done")
pump(client, server)  # the server answers the close frame by itself, then half-closes
pump(server, client)  # the client sees the answer and the end of the stream
print(f"server saw {[e for e in server.events_received() if isinstance(e, Close)]}")
pump(client, server)  # the client half-closes in turn
print(f"client: {client.state.name}, server: {server.state.name}")
