"""Checks across worker settings: values that only make sense together.

Contract: each function takes the :class:`~onepipe.app.settings.Settings` being validated
(read through :class:`Checked`)
and returns what is wrong, in words naming the ``ONEPIPE_*`` variables and what to do, or
None. :class:`~onepipe.app.settings.Settings` raises it at start (a ConfigError then).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal, Protocol

from pydantic import SecretStr

from onepipe.tables.kafka.security import SASL_MECHANISMS, KafkaSecurity, SaslMechanism
from onepipe.tables.kafka.security import Protocol as SecurityProtocol

__all__ = ["ENV_PREFIX", "Checked", "kafka_security_problem", "pairing_problem"]

ENV_PREFIX = "ONEPIPE_"


class Checked(Protocol):
    """What the checks read of :class:`~onepipe.app.settings.Settings` (a protocol: the
    settings module imports this one)."""

    @property
    def auth_reads(self) -> Literal["open", "token"]: ...
    @property
    def tokens_file(self) -> Path | None: ...
    @property
    def agent_processes(self) -> int: ...
    @property
    def agent_processes_only(self) -> bool: ...
    @property
    def kafka_security_protocol(self) -> SecurityProtocol: ...
    @property
    def kafka_sasl_mechanism(self) -> SaslMechanism | None: ...
    @property
    def kafka_sasl_username(self) -> str | None: ...
    @property
    def kafka_sasl_password(self) -> SecretStr | None: ...
    @property
    def kafka_ssl_cafile(self) -> Path | None: ...
    @property
    def kafka_ssl_certfile(self) -> Path | None: ...
    @property
    def kafka_ssl_keyfile(self) -> Path | None: ...
    @property
    def kafka_ssl_key_password(self) -> SecretStr | None: ...
    @property
    def kafka_security(self) -> KafkaSecurity: ...


def pairing_problem(settings: Checked) -> str | None:
    """A setting that needs another one set, naming both; None if nothing."""
    if settings.auth_reads == "token" and settings.tokens_file is None:  # reads stay open
        return f"{ENV_PREFIX}AUTH_READS=token needs {ENV_PREFIX}TOKENS_FILE (readers' tokens)"
    if settings.agent_processes_only and settings.agent_processes < 2:
        return (f"{ENV_PREFIX}AGENT_PROCESSES_ONLY=true needs {ENV_PREFIX}AGENT_PROCESSES of "
                f"2 or more (got {settings.agent_processes}): with one process the archive, "
                "dedup, checksum and sink agents would run nowhere")
    return None


def kafka_security_problem(settings: Checked) -> str | None:
    """What is wrong with the TLS/SASL settings, naming the variables; None if nothing.

    Settings that would be silently ignored are refused too: SASL credentials with a
    PLAINTEXT protocol would otherwise connect without authenticating, against the
    intent of whoever set them.
    """
    v = ENV_PREFIX + "KAFKA_"
    protocol = settings.kafka_security_protocol
    sasl = {f"{v}SASL_MECHANISM": settings.kafka_sasl_mechanism,
            f"{v}SASL_USERNAME": settings.kafka_sasl_username,
            f"{v}SASL_PASSWORD": settings.kafka_sasl_password}
    tls = {f"{v}SSL_CAFILE": settings.kafka_ssl_cafile,
           f"{v}SSL_CERTFILE": settings.kafka_ssl_certfile,
           f"{v}SSL_KEYFILE": settings.kafka_ssl_keyfile,
           f"{v}SSL_KEY_PASSWORD": settings.kafka_ssl_key_password}
    security = settings.kafka_security
    if security.uses_sasl:
        missing = [name for name, value in sasl.items() if not value]
        if missing:
            return (f"{v}SECURITY_PROTOCOL={protocol} needs {', '.join(missing)} "
                    f"(mechanism one of {', '.join(SASL_MECHANISMS)})")
    else:
        stray = [name for name, value in sasl.items() if value]
        if stray:
            return (f"{', '.join(stray)} set, but {v}SECURITY_PROTOCOL={protocol} does not "
                    "authenticate; set it to SASL_SSL (or SASL_PLAINTEXT), or unset them")
    if not security.uses_tls:
        stray = [name for name, value in tls.items() if value]
        if stray:
            return (f"{', '.join(stray)} set, but {v}SECURITY_PROTOCOL={protocol} uses no "
                    "TLS; set it to SSL (or SASL_SSL), or unset them")
        return None
    if settings.kafka_ssl_keyfile and not settings.kafka_ssl_certfile:
        return f"{v}SSL_KEYFILE is set without {v}SSL_CERTFILE, the certificate it belongs to"
    if settings.kafka_ssl_key_password and not settings.kafka_ssl_certfile:
        return f"{v}SSL_KEY_PASSWORD is set without {v}SSL_CERTFILE and its key"
    try:
        security.ssl_context()
    except (ssl.SSLError, OSError, ValueError) as exc:
        # Read now, at start, rather than at the first connection deep in a client.
        files = ", ".join(f"{name}={value}" for name, value in tls.items()
                          if value and not name.endswith("PASSWORD"))
        return (f"cannot build the TLS context from {files or 'the system CAs'}: {exc} "
                "(PEM files expected; is the key password right?)")
    return None
