"""The lake: where data rests as files, on a local folder or an S3 bucket.

Contract:

- One store interface, :class:`LakeStore` (store.py), over a folder (``file:///...``,
  local.py) and a bucket (``s3://bucket/prefix``, s3.py, aiobotocore); :func:`open_lake`
  (open.py) picks the store by URL. Every store makes objects visible whole or not at all,
  lets exactly one of many ``put_if_absent`` callers win, and lists finished objects only.
- Layouts say where things live and read positions back from names, with no I/O:
  ``raw/<topic>/partition=<p>/date=<D>/hour=<H>/<first>-<last>.parquet`` (raw_layout.py,
  one contiguous offset range per file, so file names alone tell what is archived;
  inventory.py lists them per partition and day; raw_reader.py reads them back). The clean
  lake is one Apache Iceberg table per topic under ``clean/<topic>/`` (the iceberg/
  capability: catalog, layout, schema, snapshots, reads); local_copy.py gives readers a
  local file for any lake object.
- Stores know nothing of Avro, Arrow or Parquet: the bytes come from onepipe.sinks.formats.
"""

from onepipe.sinks.lake.open import open_lake
from onepipe.sinks.lake.store import LakeObject, LakeStore, S3Options

__all__ = ["LakeObject", "LakeStore", "S3Options", "open_lake"]
