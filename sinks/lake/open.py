"""Opening a lake by URL: the one place that knows which store serves which scheme."""

from __future__ import annotations

from urllib.parse import urlsplit

from onepipe.schemas.errors import ConfigError
from onepipe.sinks.lake.local import LocalLake
from onepipe.sinks.lake.s3 import S3Lake
from onepipe.sinks.lake.store import LakeStore, S3Options

__all__ = ["open_lake"]


def open_lake(url: str, s3: S3Options | None = None) -> LakeStore:
    """The store for ``url``: ``file:///abs/path`` or ``s3://bucket[/prefix]``.

    Nothing is contacted yet (a local root folder is created if missing). Any other URL
    raises ``ConfigError`` naming it.
    """
    scheme = urlsplit(url).scheme.lower() if isinstance(url, str) else ""
    if scheme == "file":
        return LocalLake(url)
    if scheme == "s3":
        return S3Lake(url, s3 or S3Options())
    raise ConfigError(
        f"lake URL must be file:///absolute/path or s3://bucket/prefix; got {url!r}"
    )
