"""The dedup tables: each key's current winner per topic-partition, in RocksDB.

Contract:

- **A table is a cache of its changelog** ``<topic>.unique[p]`` (store.py): the winners
  and the changelog offset they bring the table to are written in one ``WriteBatch``, so
  after any crash the table is the fold of the changelog below its applied offset.
- **Recovery** (recovery.py) reads the changelog from that offset to the fetch high
  watermark and folds it with the merge rule (the highest rank per key stays, whatever
  order winners were written in). A table that claims more of the changelog than the
  log holds belongs to another log (a topic deleted and recreated, a broker that lost
  its memory): recovery refuses it (``StaleStoreError``) instead of trusting it.
- **The fold** (fold.py) is pure: per version, new best, duplicate or loser, against the
  best rank of its key so far; counts do not depend on how the stream was batched.
- **Reading a batch's keys** (decode.py): canonical key and order value of framed
  values, a schema's batch at a time (polars) with a record-by-record fallback that
  gives the same answers.
"""
