"""The lake in an S3 bucket (``s3://bucket/prefix``): AWS S3, MinIO, moto.

Guarantees, beyond the contract in ``onepipe.sinks.lake.store``:

- **Whole objects or nothing.** An object appears only once its upload completed; an
  upload that fails leaves no object and no billable parts behind (best effort: an
  abort that itself fails is left to the bucket's lifecycle rule for incomplete uploads).
- **Exactly one creator** through S3 conditional writes (``If-None-Match: *``), which AWS
  S3, MinIO and moto honour; servers that ignore the header would let a second creator
  overwrite (check yours before relying on ``put_if_absent`` for manifests).
- **Failures name the bucket and key** and say what to check (credentials, endpoint,
  bucket). Every error is a ``LakeError``; ``LakeObjectNotFound`` only for a missing key.

One client per store, created in the running event loop on first use (or ``async with``)
and closed by ``close``; a store belongs to the event loop that first used it.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, Self, TypeVar
from urllib.parse import urlsplit

# botocore and aiobotocore ship no type information (and pyproject's override covers only
# aiobotocore), so their objects are typed Any here.
from aiobotocore.session import get_session
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,  # not the builtin of the same name
)

from onepipe.schemas.errors import ConfigError, LakeError, LakeObjectNotFound
from onepipe.sinks.lake.store import (
    LakeObject,
    S3Options,
    check_path,
    check_prefix,
    dir_prefix,
    is_visible,
)

T = TypeVar("T")

#: Above this size ``put`` uploads in parts: a single PutObject is capped at 5 GiB and a
#: failed 1 GiB single request must be re-sent whole.
MULTIPART_THRESHOLD = 64 * 1024 * 1024
#: Each part but the last must be at least 5 MiB (S3's limit); 16 MiB keeps the number of
#: parts for a 5 GiB object far below the 10,000 allowed.
PART_SIZE = 16 * 1024 * 1024
#: Parts in flight at once for one object: enough to fill a link, bounded memory.
PART_CONCURRENCY = 4
#: AWS answers 409 ConditionalRequestConflict while another conditional write to the same
#: key is in flight; once that settles, the retry gets 200 or 412.
_CONFLICT_RETRIES = 5

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_CREDENTIALS = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "403",
}


class S3Lake:
    """A lake under ``s3://bucket/prefix``; create it with ``open_lake("s3://...")``."""

    def __init__(self, url: str, options: S3Options | None = None) -> None:
        parts = urlsplit(url)
        bucket = parts.netloc
        if parts.scheme != "s3" or not bucket or parts.query or parts.fragment:
            raise ConfigError(f"an S3 lake URL is s3://bucket/optional/prefix; got {url!r}")
        key_prefix = parts.path.strip("/")
        if key_prefix:
            try:
                check_prefix(key_prefix + "/")
            except LakeError as exc:
                raise ConfigError(f"the key prefix of the lake URL {url!r} is invalid: "
                                  f"{exc.message}") from exc
        options = options or S3Options()
        if (options.access_key_id is None) != (options.secret_access_key is None):
            raise ConfigError(
                "S3 credentials need both access_key_id and secret_access_key, or neither "
                f"(to use the AWS chain: env vars, profile, role); got only one for {url}"
            )
        self.url = url
        #: Objects are remote: readers fetch (and may cache) them.
        self.local_root: Path | None = None
        self.bucket = bucket
        #: '' or 'some/prefix/': prepended to every lake path to form the key.
        self.key_prefix = key_prefix + "/" if key_prefix else ""
        self.options = options
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._closed = False
        self._opening = asyncio.Lock()

    def __repr__(self) -> str:
        return f"S3Lake({self.url!r}, endpoint={self.options.endpoint_url!r})"

    # --- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self._get_client()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def _get_client(self) -> Any:
        if self._closed:
            raise LakeError(f"the lake {self.url} is closed; open a new store with open_lake()")
        if self._client is not None:
            return self._client
        async with self._opening:
            if self._client is None:
                opts = self.options
                config = Config(
                    retries={"mode": "standard", "max_attempts": 3},
                    connect_timeout=10,
                    read_timeout=60,
                    # Custom endpoints (MinIO, moto, an IP) rarely resolve bucket subdomains.
                    s3={"addressing_style": "path" if opts.endpoint_url else "auto"},
                )
                stack = AsyncExitStack()
                self._client = await stack.enter_async_context(
                    get_session().create_client(
                        "s3",
                        endpoint_url=opts.endpoint_url,
                        region_name=opts.region,
                        aws_access_key_id=opts.access_key_id,
                        aws_secret_access_key=opts.secret_access_key,
                        config=config,
                    )
                )
                self._stack = stack
        return self._client

    # --- the contract ---------------------------------------------------------------

    async def put(self, path: str, data: bytes) -> None:
        key = self._key(path)
        if len(data) > MULTIPART_THRESHOLD:
            await self._multipart(key, data, if_absent=False)
            return
        await self._call(key, lambda c: c.put_object(Bucket=self.bucket, Key=key, Body=data))

    async def put_if_absent(self, path: str, data: bytes) -> bool:
        key = self._key(path)
        for attempt in range(_CONFLICT_RETRIES + 1):
            try:
                if len(data) > MULTIPART_THRESHOLD:
                    await self._multipart(key, data, if_absent=True)
                else:
                    await self._call(key, lambda c: c.put_object(
                        Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*"))
                return True
            except LakeError as exc:
                code = _code(exc.__cause__)
                if code in ("PreconditionFailed", "412"):
                    return False
                if code != "ConditionalRequestConflict" or attempt == _CONFLICT_RETRIES:
                    raise
                await asyncio.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")  # the loop returns or raises

    async def get(self, path: str) -> bytes:
        key = self._key(path)

        async def read(client: Any) -> bytes:
            response = await client.get_object(Bucket=self.bucket, Key=key)
            async with response["Body"] as body:
                data: bytes = await body.read()
            return data

        return await self._call(key, read)

    async def get_range(self, path: str, start: int, length: int) -> bytes:
        key = self._key(path)
        if start < 0 or length < 0:
            raise LakeError(f"get_range needs start >= 0 and length >= 0; got start={start}, "
                            f"length={length} for {path!r}")
        if length == 0:
            if not await self.exists(path):
                raise LakeObjectNotFound(f"{path!r} is not in the lake {self.url}")
            return b""

        async def read(client: Any) -> bytes:
            try:
                response = await client.get_object(
                    Bucket=self.bucket, Key=key, Range=f"bytes={start}-{start + length - 1}"
                )
            except ClientError as exc:
                if _code(exc) == "InvalidRange":  # start is at or past the end
                    return b""
                raise
            async with response["Body"] as body:
                data: bytes = await body.read()
            # A server that ignores Range sends the whole object (200 instead of 206).
            if "ContentRange" not in response:
                data = data[start:start + length]
            return data

        return await self._call(key, read)

    async def exists(self, path: str) -> bool:
        key = self._key(path)
        try:
            await self._call(key, lambda c: c.head_object(Bucket=self.bucket, Key=key))
        except LakeObjectNotFound:
            return False
        return True

    async def list(self, prefix: str) -> builtins.list[LakeObject]:
        check_prefix(prefix)
        full = self.key_prefix + prefix
        cut = len(self.key_prefix)

        async def collect(client: Any) -> builtins.list[LakeObject]:
            found = []
            paginator = client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for item in page.get("Contents", ()):
                    path = item["Key"][cut:]
                    if is_visible(path):  # skips folder markers ('x/') and hidden keys
                        found.append(LakeObject(path, int(item["Size"])))
            found.sort(key=lambda o: o.path)
            return found

        return await self._call(full, collect)

    async def list_dirs(self, prefix: str) -> builtins.list[str]:
        full = self.key_prefix + dir_prefix(prefix)

        async def collect(client: Any) -> builtins.list[str]:
            names = []
            paginator = client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=full, Delimiter="/"):
                for common in page.get("CommonPrefixes", ()):
                    name = common["Prefix"][len(full):].rstrip("/")
                    if name and not name.startswith("."):
                        names.append(name)
            return sorted(names)

        return await self._call(full, collect)

    async def delete(self, path: str) -> None:
        key = self._key(path)
        # S3 answers 204 for a missing key as well, so deleting twice is fine.
        await self._call(key, lambda c: c.delete_object(Bucket=self.bucket, Key=key))

    # --- mechanics ------------------------------------------------------------------

    async def remove_stale_temp_files(self, prefix: str) -> int:
        """Nothing to remove: a PUT is atomic and an interrupted multipart upload is never
        listed (a bucket lifecycle rule aborts those)."""
        check_prefix(prefix)
        return 0

    def _key(self, path: str) -> str:
        check_path(path)
        if self._closed:
            raise LakeError(f"the lake {self.url} is closed; open a new store with open_lake()")
        return self.key_prefix + path

    async def _multipart(self, key: str, data: bytes, *, if_absent: bool) -> None:
        """Upload in parts; the object becomes visible only on completion."""
        created = await self._call(
            key, lambda c: c.create_multipart_upload(Bucket=self.bucket, Key=key))
        upload_id = created["UploadId"]
        limit = asyncio.Semaphore(PART_CONCURRENCY)

        async def upload(number: int, offset: int) -> dict[str, Any]:
            async with limit:
                body = data[offset:offset + PART_SIZE]
                response = await self._call(key, lambda c: c.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload_id,
                    PartNumber=number, Body=body))
            return {"PartNumber": number, "ETag": response["ETag"]}

        try:
            parts = await asyncio.gather(*(
                upload(number, offset)
                for number, offset in enumerate(range(0, len(data), PART_SIZE), start=1)
            ))
            extra = {"IfNoneMatch": "*"} if if_absent else {}
            await self._call(key, lambda c: c.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id,
                MultipartUpload={"Parts": parts}, **extra))
        except BaseException:
            # Parts of an aborted upload are deleted rather than billed forever; shielded so
            # a cancelled writer still cleans up. A failing abort must not hide the cause.
            with contextlib.suppress(LakeError):
                await asyncio.shield(self._call(key, lambda c: c.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id)))
            raise

    async def _call(self, key: str, op: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``op(client)``, turning botocore failures into LakeError naming ``key``."""
        client = await self._get_client()
        try:
            return await op(client)
        except (ClientError, BotoCoreError) as exc:
            self._raise(key, exc)

    def _raise(self, key: str, exc: Exception) -> NoReturn:
        where = f"s3://{self.bucket}/{key}"
        endpoint = self.options.endpoint_url or "the AWS S3 endpoint"
        code = _code(exc)
        if code in _NOT_FOUND:
            raise LakeObjectNotFound(f"{where} is not in the lake {self.url}") from exc
        if code == "NoSuchBucket":
            hint = f"the bucket {self.bucket!r} does not exist at {endpoint}; create it"
        elif code in _CREDENTIALS or isinstance(exc, NoCredentialsError | PartialCredentialsError):
            hint = ("check the S3 credentials (access key, secret, session token) and that "
                    f"they may read and write bucket {self.bucket!r}")
        elif isinstance(exc, BotoConnectionError):
            hint = f"check that the S3 endpoint {endpoint} is reachable (endpoint_url, network)"
        else:
            hint = f"check the endpoint {endpoint}, the credentials and the bucket"
        raise LakeError(f"S3 request for {where} failed: {exc}; {hint}") from exc


def _code(exc: BaseException | None) -> str:
    """The S3 error code of a botocore ClientError (``NoSuchKey``, ``412``...), else ''."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""
