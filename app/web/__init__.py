"""The worker's HTTP API: the one door into the platform.

Contract:
- Every worker serves the same API (``server.build_web_app``): the Confluent-compatible
  registry (``registry``), the topic catalog (``topics``), the schema-enforcing produce
  endpoint (``produce``), and the read-only views of the running worker (``health``,
  ``status``, ``metrics``, ``verify``, ``sinks``).
- Every failure a client can cause is a 4xx with a JSON body
  ``{"error_code", "message", "code"}`` (``http``); a 500 is a bug in onepipe, logged
  with its stack trace and never shown to the client.
- Views read the worker through one :data:`~onepipe.app.web.http.CTX` key
  (:class:`~onepipe.app.context.WorkerContext`); none of them holds state of its own.
"""
