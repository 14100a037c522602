"""Opening the clean lake's Iceberg catalog: a SQL catalog beside a lake store.

Contract:
- :func:`open_catalog` takes the catalog's SQLAlchemy URI (``sqlite:///<file>`` embedded,
  ``postgresql+psycopg://...`` in production) and the lake: the warehouse is
  ``<lake URL>/clean`` and each topic's table ``("onepipe", "<topic>")`` is located at
  ``<lake URL>/clean/<topic>`` (onepipe.sinks.lake.iceberg.layout). An S3 lake's
  endpoint, region and keys become the FileIO properties (``s3.endpoint``, ...), so
  pyiceberg reads and writes the same bucket the lake store does.
- An empty URI means the lake's embedded catalog, ``sqlite:///<lake folder>/iceberg.db``
  (:func:`embedded_catalog_uri`; a local lake only - an S3 lake names its catalog).
- Workers sharing a lake must share the catalog: two catalogs over one location would
  each believe they own it. A table whose location is not this lake's raises
  :class:`~onepipe.schemas.errors.CatalogError` naming both, before anything is written.
- The catalog's database failing (unreachable, refused) raises ``CatalogError``
  (retriable) naming the URI with its password masked. pyiceberg calls block: callers on
  an event loop run them in a thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.table import Table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, SQLAlchemyError

from onepipe.schemas.errors import CatalogError, ConfigError
from onepipe.sinks.lake.iceberg.layout import CLEAN, table_prefix
from onepipe.sinks.lake.s3 import S3Lake
from onepipe.sinks.lake.store import LakeStore

__all__ = ["NAMESPACE", "CleanCatalog", "clean_table", "embedded_catalog_uri",
           "io_properties", "open_catalog"]

#: The namespace of every clean table.
NAMESPACE = "onepipe"
_OPEN_ATTEMPTS = 3
#: The catalog name stored in the SQL catalog's rows (tables of one catalog share it).
CATALOG_NAME = "onepipe"


def lake_base_url(lake: LakeStore) -> str:
    """The lake root as pyiceberg spells file locations (no trailing '/')."""
    if lake.local_root is not None:
        # A plain path after file:// - pyiceberg's FileIO does not unquote %-escapes.
        return f"file://{lake.local_root}"
    return lake.url.rstrip("/")


def io_properties(lake: LakeStore) -> dict[str, str]:
    """pyiceberg FileIO properties reaching ``lake`` (S3 endpoint, region, keys)."""
    props = {"py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO"}
    if isinstance(lake, S3Lake):
        options = lake.options
        if options.endpoint_url:
            props["s3.endpoint"] = options.endpoint_url
        if options.region:
            props["s3.region"] = options.region
        if options.access_key_id and options.secret_access_key:
            props["s3.access-key-id"] = options.access_key_id
            props["s3.secret-access-key"] = options.secret_access_key
    return props


def masked(uri: str) -> str:
    """``uri`` with its password hidden, for messages and logs."""
    try:
        return make_url(uri).render_as_string(hide_password=True)
    except ArgumentError:
        return "<not a SQLAlchemy URI>"


@dataclass(slots=True)
class CleanCatalog:
    """The catalog of one lake's clean tables; see the module contract."""

    #: The pyiceberg catalog (plain pyiceberg: any engine may open it the same way).
    catalog: SqlCatalog
    #: The lake holding the tables' files.
    lake: LakeStore
    #: The SQLAlchemy URI (for messages: use :func:`masked`).
    uri: str

    @property
    def base_url(self) -> str:
        return lake_base_url(self.lake)

    def location(self, topic: str) -> str:
        """Where ``topic``'s table lives: ``<lake URL>/clean/<topic>``."""
        return f"{self.base_url}/{table_prefix(topic).rstrip('/')}"

    def file_url(self, path: str) -> str:
        """The Iceberg file location of lake path ``path``."""
        return f"{self.base_url}/{path}"

    def lake_path(self, url: str) -> str:
        """The lake path of an Iceberg file location of this lake."""
        base = self.base_url + "/"
        if not url.startswith(base):
            raise CatalogError(f"{url!r} is not in the lake {self.lake.url}; the table's "
                               "files must live in the lake its catalog serves")
        return url[len(base):]

    def load(self, topic: str) -> Table | None:
        """``topic``'s table, or None when it does not exist yet."""
        with catalog_errors(self.uri):
            try:
                table = self.catalog.load_table((NAMESPACE, topic))
            except NoSuchTableError:
                return None
        self.check_location(topic, table)
        return table

    def check_location(self, topic: str, table: Table) -> None:
        if table.location().rstrip("/") != self.location(topic):
            raise CatalogError(
                f"the catalog {masked(self.uri)} holds table {NAMESPACE}.{topic} at "
                f"{table.location()!r}, not in this lake ({self.location(topic)!r}); each lake "
                "needs its own catalog - set ONEPIPE_ICEBERG_CATALOG_URI to the lake's")

    def close(self) -> None:
        """Release the database connections; harmless twice."""
        self.catalog.engine.dispose()


@contextmanager
def catalog_errors(uri: str) -> Iterator[None]:
    """SQLAlchemy failures as a :class:`CatalogError` naming the catalog."""
    try:
        yield
    except SQLAlchemyError as exc:
        error = CatalogError(f"the Iceberg catalog {masked(uri)} failed: {exc}; check that its "
                             "database is up and reachable (ONEPIPE_ICEBERG_CATALOG_URI)")
        error.retriable = True
        raise error from exc


def embedded_catalog_uri(lake: LakeStore) -> str:
    """The catalog kept inside a local lake's folder (what an empty URI means)."""
    if lake.local_root is None:
        raise ConfigError(f"the S3 lake {lake.url} has no embedded Iceberg catalog; set "
                          "ONEPIPE_ICEBERG_CATALOG_URI (e.g. postgresql+psycopg://...) to the "
                          "catalog every worker of this lake shares")
    return f"sqlite:///{lake.local_root / 'iceberg.db'}"


def open_catalog(uri: str, lake: LakeStore, **properties: Any) -> CleanCatalog:
    """The SQL catalog at ``uri`` ('' : the lake's embedded one) serving ``lake``'s clean
    tables (its tables and namespace are created if missing)."""
    uri = uri or embedded_catalog_uri(lake)
    try:
        url = make_url(uri)
    except ArgumentError as exc:
        raise ConfigError(f"ONEPIPE_ICEBERG_CATALOG_URI must be a SQLAlchemy URI such as "
                          f"sqlite:////var/lib/onepipe/iceberg.db or "
                          f"postgresql+psycopg://user@host/db; got {uri!r}") from exc
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)  # the embedded default
    for attempt in range(_OPEN_ATTEMPTS):
        with catalog_errors(uri):
            try:
                catalog = SqlCatalog(CATALOG_NAME, uri=uri,
                                     warehouse=f"{lake_base_url(lake)}/{CLEAN}",
                                     **io_properties(lake), **properties)
                catalog.create_namespace_if_not_exists(NAMESPACE)
            except (OperationalError, IntegrityError):
                # Two workers opening a new catalog at once both create its tables (or
                # namespace); the loser finds them made: look again.
                if attempt + 1 == _OPEN_ATTEMPTS:
                    raise
                continue
            return CleanCatalog(catalog, lake, uri)
    raise AssertionError("unreachable")  # the loop returns or raises


def clean_table(catalog: CleanCatalog, topic: str) -> Table | None:
    """``topic``'s clean table, or None when nothing was compacted yet."""
    return catalog.load(topic)
