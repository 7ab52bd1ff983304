"""The broker: one asyncio process that authenticates, authorizes and routes; it never runs user code.

Built by ``compose`` (the composition root, in dependency order) and run by
``server.Broker``. Its rooms:

- sockets and ports: ``sockets`` (public listeners handed to the edge, loopback
  sockets, the runtime file), ``edgeproc`` and ``edgelink`` (the edge process
  and its link), ``zap`` and ``policy`` (who may connect), ``keyport``;
- clients: ``control`` (parse, authorize, route), ``dispatch`` (the table),
  ``handlers`` (requests the broker answers itself), ``replies``, ``sessions``,
  ``limiter``, ``accounts`` (re-checking logged-in accounts), ``admission``;
- workers: ``backend`` (the router), ``registry``, ``supervisor``,
  ``workerstart`` (which workers start when), ``worker_events`` and ``quota``
  (what a user's worker may say, and how much), ``floodcuts``;
- kernels: ``kernel_service`` (the one interface: admission, records and
  adoption, sealing, the idle rule) over ``kernels`` (the book);
- the host: ``events`` (PUB), ``announce`` (zeroconf).
"""
