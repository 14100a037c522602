"""TLS and SASL reach every kind of client the factory builds, and stay out of reprs.

No TLS or SASL broker runs here: these read the options each built client holds (what it
would send in its handshake); the PLAINTEXT path is exercised against the real broker by
every other test.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.client import AIOKafkaClient

from onepipe.tables.kafka import KafkaClients
from onepipe.tables.kafka.security import KafkaSecurity
from tests.fixtures.tls import self_signed

SASL_SSL = KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                         sasl_username="onepipe", sasl_password="s3cret-pw")


@contextlib.asynccontextmanager
async def every_client(kafka: KafkaClients) -> AsyncIterator[dict[str, Any]]:
    """One aiokafka client of each kind (never started), closed afterwards (the librdkafka
    group consumer's settings: tests/tables/kafka/test_rdkafka_consumer.py)."""
    aio = dataclasses.replace(kafka, consumer_client="aiokafka")
    clients = {"producer": kafka.producer("p"), "group_consumer": aio.group_consumer("g"),
               "reader": kafka.reader("r"), "admin": kafka.admin("a")}
    try:
        yield clients
    finally:
        for kind, client in clients.items():
            await (client.close() if kind == "admin" else client.stop())


@contextlib.asynccontextmanager
async def one(client: Any) -> AsyncIterator[AIOKafkaClient]:
    """The aiokafka client holding ``client``'s connection options; ``client`` is stopped
    afterwards."""
    try:
        yield connection(client)
    finally:
        await client.stop()


def connection(client: Any) -> AIOKafkaClient:
    inner = getattr(client, "client", None) or client._client
    assert isinstance(inner, AIOKafkaClient)
    return inner


async def test_plaintext_clients_are_built_as_before() -> None:
    async with every_client(KafkaClients("127.0.0.1:9")) as clients:
        for kind, client in clients.items():
            inner = connection(client)
            assert inner._security_protocol == "PLAINTEXT", kind
            assert inner._ssl_context is None, kind
            assert inner._sasl_plain_username is None, kind


async def test_sasl_over_tls_reaches_every_kind_of_client(tmp_path: Path) -> None:
    cafile, _ = self_signed(tmp_path)
    security = dataclasses.replace(SASL_SSL, ssl_cafile=str(cafile))
    kafka = KafkaClients("127.0.0.1:9", security=security)
    contexts = set()
    async with every_client(kafka) as clients:
        for kind, client in clients.items():
            inner = connection(client)
            assert inner._security_protocol == "SASL_SSL", kind
            assert inner._sasl_mechanism == "SCRAM-SHA-512", kind
            assert inner._sasl_plain_username == "onepipe", kind
            assert inner._sasl_plain_password == "s3cret-pw", kind
            assert inner._ssl_context is not None, kind
            contexts.add(id(inner._ssl_context))
    assert len(contexts) == 1  # one context read from the files, shared


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_sasl_without_tls_has_no_tls_context(mechanism: str) -> None:
    security = KafkaSecurity(protocol="SASL_PLAINTEXT", sasl_mechanism=mechanism,  # type: ignore[arg-type]  # a literal from the parameter list
                             sasl_username="u", sasl_password="p")
    async with one(KafkaClients("127.0.0.1:9", security=security).producer("p")) as inner:
        assert (inner._security_protocol, inner._sasl_mechanism) == ("SASL_PLAINTEXT",
                                                                     mechanism)
        assert inner._ssl_context is None


async def test_tls_with_a_client_certificate_verifies_the_broker(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, password="key-pw")
    security = KafkaSecurity(protocol="SSL", ssl_cafile=str(cert), ssl_certfile=str(cert),
                             ssl_keyfile=str(key), ssl_key_password="key-pw")
    async with one(KafkaClients("127.0.0.1:9", security=security).reader("r")) as inner:
        assert inner._security_protocol == "SSL"
        context = inner._ssl_context
    assert context is not None and context.check_hostname
    assert context.get_ca_certs()[0]["subject"] == ((("commonName", "localhost"),),)


async def test_a_part_cannot_override_the_connection_security() -> None:
    kafka = KafkaClients("127.0.0.1:9", security=SASL_SSL)
    producer = kafka.producer("p", security_protocol="PLAINTEXT", sasl_plain_password="x")
    async with one(producer) as inner:
        assert inner._security_protocol == "SASL_SSL"
        assert inner._sasl_plain_password == "s3cret-pw"


def test_passwords_never_show_in_a_repr() -> None:
    security = dataclasses.replace(SASL_SSL, ssl_key_password="key-pw")
    shown = repr(KafkaClients("127.0.0.1:9", security=security))
    assert "onepipe" in shown and "SCRAM-SHA-512" in shown
    assert "s3cret-pw" not in shown and "key-pw" not in shown
