"""The same TLS and SASL settings in librdkafka's names (the hot paths' clients).

No TLS or SASL broker runs here: these check the configuration each setting becomes, and
that librdkafka itself accepts it (it reads the certificate and key files when a client is
built, so a wrong mapping fails right here).
"""

from __future__ import annotations

from pathlib import Path

import confluent_kafka

from onepipe.tables.kafka import KafkaClients
from onepipe.tables.kafka.security import KafkaSecurity
from tests.fixtures.tls import self_signed


def test_plaintext_adds_only_the_protocol() -> None:
    assert KafkaSecurity().librdkafka_options() == {"security.protocol": "PLAINTEXT"}


def test_sasl_over_tls_with_the_systems_cas() -> None:
    options = KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                            sasl_username="onepipe", sasl_password="pw").librdkafka_options()
    assert options == {"security.protocol": "SASL_SSL", "ssl.ca.location": "probe",
                       "ssl.endpoint.identification.algorithm": "https",
                       "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "onepipe",
                       "sasl.password": "pw"}


def test_sasl_without_tls_has_no_tls_options() -> None:
    options = KafkaSecurity(protocol="SASL_PLAINTEXT", sasl_username="u",
                            sasl_password="p").librdkafka_options()
    assert options == {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
                       "sasl.username": "u", "sasl.password": "p"}
    assert not any(k.startswith("ssl.") for k in options)


def test_a_client_certificate_and_its_encrypted_key(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, password="k3y")
    security = KafkaSecurity(protocol="SSL", ssl_cafile=str(cert), ssl_certfile=str(cert),
                             ssl_keyfile=str(key), ssl_key_password="k3y")
    options = security.librdkafka_options()
    assert options["ssl.ca.location"] == str(cert)
    assert options["ssl.certificate.location"] == str(cert)
    assert options["ssl.key.location"] == str(key)
    assert options["ssl.key.password"] == "k3y"
    # librdkafka loads the files now: a wrong name or an unreadable key fails here.
    confluent_kafka.Producer({"bootstrap.servers": "127.0.0.1:9", **options}).close()


def test_a_key_inside_the_certificate_file(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    both = tmp_path / "both.pem"
    both.write_bytes(cert.read_bytes() + key.read_bytes())
    options = KafkaSecurity(protocol="SSL", ssl_cafile=str(cert),
                            ssl_certfile=str(both)).librdkafka_options()
    assert options["ssl.key.location"] == str(both)
    confluent_kafka.Producer({"bootstrap.servers": "127.0.0.1:9", **options}).close()


def test_the_factorys_librdkafka_producer_carries_them_over_any_override(
        tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    security = KafkaSecurity(protocol="SASL_SSL", sasl_username="u", sasl_password="p",
                             ssl_cafile=str(cert))
    producer = KafkaClients("127.0.0.1:9", security=security).rdkafka_producer(
        "p", overrides={"security.protocol": "PLAINTEXT", "sasl.password": "x"})
    assert producer.config["security.protocol"] == "SASL_SSL"
    assert producer.config["sasl.password"] == "p"
    assert producer.config["ssl.ca.location"] == str(cert)


def test_the_password_is_not_in_a_repr() -> None:
    security = KafkaSecurity(protocol="SASL_SSL", sasl_password="s3cret-pw",
                             ssl_key_password="k3y-pw")
    assert "s3cret-pw" not in repr(security) and "k3y-pw" not in repr(security)
