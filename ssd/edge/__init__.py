"""The edge: the process that faces anonymous clients, as sshd's pre-authentication child does.

It holds the public CURVE sockets (control ROUTER, events PUB) and their ZAP
handler, runs unprivileged (``server.edge_user`` in system mode) under a data
limit (``server.edge_memory_limit``), and forwards each complete client
message, with the client key ZAP proved and the peer address, to the broker
over a private CURVE link (``ssd.edge.link``). The broker parses, authorizes
and answers; its replies and events go back out through here.

Why a process of its own: libzmq buffers a whole multipart message, of any
number of frames, before the application sees it, and nothing in ZeroMQ bounds
the count. A flood guard (``ssd.floodguard``) cuts the connection that
sent the most when the edge grows; if libzmq still runs out of memory under
the limit, only the edge dies, with its own connections, and the broker starts
a new one at once. Clients reconnect by themselves.

Started by the broker only (``ssd.broker.edgeproc``): ``python -I -m ssd.edge``
with its credentials on stdin; it exits when that pipe closes.
"""
