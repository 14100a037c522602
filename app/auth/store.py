"""The tokens a running worker accepts: the tokens file's, followed as it changes.

Contract:
- :meth:`TokenStore.verify` is the per-request cost: one SHA-256 of the presented token
  and one dict lookup once that token has been verified in this process (verified
  tokens are cached by the token's SHA-256, so the cache never holds a token in clear).
  A token seen for the first time costs one more dict lookup (by key id), one salted
  SHA-256 and a constant-time comparison.
- Changes to the file reach the worker within ``check_every`` seconds (1 s): at most
  once per interval, lazily on a request, the file's ``os.stat`` (inode, size, mtime) is
  compared with the last one read; on a change the file is read again and the cache
  cleared, so a removed token stops working at the next check. No background task.
- A file that does not parse (or cannot be read) keeps the tokens read before, logs an
  ERROR saying what is wrong (once per version of the file) and sets :attr:`problem`,
  which fails ``/readyz`` (a token removed from it may still work); a missing file means
  no token at all. Neither ever opens the API: without a valid token, nothing that needs
  one is allowed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from pathlib import Path

from onepipe.app.auth.token_file import read_tokens
from onepipe.app.auth.tokens import TokenEntry, secret_digest, split_token
from onepipe.schemas.errors import ConfigError

log = logging.getLogger(__name__)

#: (inode, size, mtime_ns) of the file read last; None: there was no file.
Signature = tuple[int, int, int] | None


class TokenStore:
    """The worker's view of the tokens file; ``clock`` is injectable for tests."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.monotonic,
                 check_every: float = 1.0) -> None:
        self.path = path
        self._clock = clock
        self._check_every = check_every
        self._by_key: dict[str, TokenEntry] = {}
        self._verified: dict[bytes, TokenEntry] = {}
        self._signature: Signature = None
        self._failed: Signature = None
        #: Why the file last read could not be used (the old tokens still apply), or None;
        #: ``/readyz`` fails while it is set, since a removed token may still work.
        self.problem: str | None = None
        self._next_check = clock() + check_every
        # The first read raises: a worker does not start on a file it cannot parse.
        self._signature = self._stat()
        self._install(read_tokens(path))

    @property
    def tokens(self) -> list[TokenEntry]:
        return list(self._by_key.values())

    def verify(self, token: str) -> TokenEntry | None:
        """The entry of a valid token; None for anything else (never raises)."""
        now = self._clock()
        if now >= self._next_check:
            self._next_check = now + self._check_every
            self.reload_if_changed()
        fingerprint = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        entry = self._verified.get(fingerprint)
        if entry is not None:
            return entry
        parts = split_token(token)
        if parts is None:
            return None
        key_id, secret = parts
        # The key id is public (stored in clear); only the secret is compared in
        # constant time.
        entry = self._by_key.get(key_id)
        if entry is None or not hmac.compare_digest(secret_digest(entry.salt, secret),
                                                    entry.digest):
            return None
        self._verified[fingerprint] = entry
        return entry

    def reload_if_changed(self) -> bool:
        """Read the file again if its stat changed; whether the tokens were replaced."""
        signature = self._stat()
        if signature == self._signature or (signature is not None
                                            and signature == self._failed):
            return False
        problem: str | None = None
        try:
            entries = read_tokens(self.path)
        except ConfigError as exc:
            problem = exc.message
        if problem is not None:
            # A stack trace would add nothing to a message that names the file and the
            # fault; logged once per version of the file.
            self._failed, self.problem = signature, problem
            log.error("%s; the worker keeps the %d token(s) it read before", problem,
                      len(self._by_key))
            return False
        self._signature, self._failed, self.problem = signature, None, None
        self._install(entries)
        if signature is None:
            log.warning("tokens file %s is gone: no token is valid any more", self.path)
        else:
            log.info("tokens file %s read again: %d token(s)", self.path, len(entries))
        return True

    def _install(self, entries: list[TokenEntry]) -> None:
        self._by_key = {e.key_id: e for e in entries}
        self._verified = {}

    def _stat(self) -> Signature:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            reason = exc.strerror
        else:
            return st.st_ino, st.st_size, st.st_mtime_ns
        log.error("cannot stat the tokens file %s: %s; keeping the tokens read before",
                  self.path, reason)
        return self._signature
