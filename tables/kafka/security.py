"""How onepipe authenticates to Kafka and encrypts the connection: TLS and SASL.

Contract:
- :class:`KafkaSecurity` is the one description of the connection's security; the client
  factory (onepipe.tables.kafka.clients) merges :meth:`KafkaSecurity.client_options` into
  every producer, consumer and admin client it builds, and the worker hands the same
  values to Faust, so no client can reach the broker with other settings than the rest.
- ``PLAINTEXT`` (the default) adds nothing: clients are built exactly as before.
- For ``SSL`` and ``SASL_SSL`` an :class:`ssl.SSLContext` is built with aiokafka's
  ``create_ssl_context`` (server certificates verified, host names checked; the system's
  CAs unless a CA file is given) and shared by every client built with the same files.
- :meth:`KafkaSecurity.librdkafka_options` says the same in librdkafka's configuration
  names (the hot paths' confluent-kafka clients): the same files, the same checks (server
  certificates verified against the CA file or the system's CAs, host names checked).
- The password never appears in a ``repr`` (so not in a log line or a traceback either).
- Combinations are checked where the values are read (onepipe.app.settings), so the error
  can name the environment variable; :meth:`KafkaSecurity.ssl_context` raises
  :class:`ssl.SSLError` or :class:`OSError` for unreadable files, and the settings turn
  that into a ConfigError at start.
"""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass, field
from typing import Any, Literal

from aiokafka.helpers import create_ssl_context

__all__ = ["SASL_MECHANISMS", "SECURITY_PROTOCOLS", "KafkaSecurity", "Protocol",
           "SaslMechanism"]

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
#: Every protocol Kafka listeners speak (GSSAPI and OAUTHBEARER are not offered).
SECURITY_PROTOCOLS: tuple[Protocol, ...] = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS: tuple[SaslMechanism, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """TLS and SASL settings of every Kafka connection; PLAINTEXT by default."""

    #: The broker listener's protocol.
    protocol: Protocol = "PLAINTEXT"
    #: SASL mechanism, for the SASL_* protocols.
    sasl_mechanism: SaslMechanism | None = None
    #: SASL user name, for the SASL_* protocols.
    sasl_username: str | None = None
    #: SASL password; never shown in a repr.
    sasl_password: str | None = field(default=None, repr=False)
    #: PEM file of the CA(s) that signed the brokers' certificates; None: the system's CAs.
    ssl_cafile: str | None = None
    #: PEM client certificate, for brokers that authenticate clients by certificate.
    ssl_certfile: str | None = None
    #: PEM private key of the client certificate, when not inside ``ssl_certfile``.
    ssl_keyfile: str | None = None
    #: Password of an encrypted private key; never shown in a repr.
    ssl_key_password: str | None = field(default=None, repr=False)

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of these settings (one per set of files), or None without TLS."""
        if not self.uses_tls:
            return None
        return _ssl_context(self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile,
                            self.ssl_key_password)

    def client_options(self) -> dict[str, Any]:
        """The aiokafka keyword arguments (producer, consumer and admin take the same)."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        context = self.ssl_context()
        if context is not None:
            options["ssl_context"] = context
        if self.uses_sasl:
            options.update(sasl_mechanism=self.sasl_mechanism or "PLAIN",
                           sasl_plain_username=self.sasl_username,
                           sasl_plain_password=self.sasl_password)
        return options

    def librdkafka_options(self) -> dict[str, str]:
        """The same settings as librdkafka configuration properties."""
        options: dict[str, str] = {"security.protocol": self.protocol}
        if self.uses_tls:
            options.update({
                # "probe": the system's CA bundle, wherever this OS keeps it (the wheel's
                # OpenSSL does not know the distribution's default path).
                "ssl.ca.location": self.ssl_cafile or "probe",
                "ssl.endpoint.identification.algorithm": "https",
            })
            if self.ssl_certfile:
                options["ssl.certificate.location"] = self.ssl_certfile
                # The key may sit inside the certificate file, as aiokafka accepts.
                options["ssl.key.location"] = self.ssl_keyfile or self.ssl_certfile
            if self.ssl_key_password:
                options["ssl.key.password"] = self.ssl_key_password
        if self.uses_sasl:
            options["sasl.mechanism"] = self.sasl_mechanism or "PLAIN"
            if self.sasl_username is not None:
                options["sasl.username"] = self.sasl_username
            if self.sasl_password is not None:
                options["sasl.password"] = self.sasl_password
        return options


@functools.lru_cache(maxsize=8)
def _ssl_context(cafile: str | None, certfile: str | None, keyfile: str | None,
                 password: str | None) -> ssl.SSLContext:
    # Cached: every client built from the same settings shares one context instead of
    # reading and parsing the PEM files again (a worker builds a dozen clients).
    return create_ssl_context(cafile=cafile, certfile=certfile, keyfile=keyfile,
                              password=password)
