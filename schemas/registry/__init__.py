"""The pieces of the registry model beside its state machine (onepipe.schemas.registry_state).

- :mod:`.types`: a subject's versions (live and soft-deleted), a version as clients see
  it, a decision to append to the log;
- :mod:`.modes`: the registry modes (READWRITE, READONLY, ...) onepipe accepts;
- :mod:`.normalize`: Confluent's ``normalize=true`` for Avro, as a pure function;
- :mod:`.decide`: what a registration or a delete means against the current state (the
  writer's side; the state machine re-checks every decision when it applies it).

Pure data and functions: no I/O, nothing from ``tables`` or ``app``.
"""
