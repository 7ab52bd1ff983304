"""The flood guard: cuts the TCP connection that floods a ZeroMQ socket with one message of many tiny frames.

libzmq buffers a whole multipart message, about 64 bytes per frame, before the
application sees it, and nothing in ZeroMQ bounds the frame count. The guard
(``guard.FloodGuard``, a thread) watches the process's memory in use and the
accepted connections of the sockets it is given, and shuts down the one the
policy (``policy.FloodPolicy``, pure) names; libzmq then drops its partial
message. Used by the edge (the public sockets) and by the broker (the worker
backend, where a user's own worker is its user's to control).
"""
