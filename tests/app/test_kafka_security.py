"""Kafka TLS/SASL settings: read from ONEPIPE_KAFKA_*, checked at start, given to Faust too."""

from __future__ import annotations

from pathlib import Path

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from onepipe.app.settings import Settings, load_settings
from onepipe.app.worker import create_app
from onepipe.schemas.errors import ConfigError
from tests.fixtures.tls import self_signed

SASL = {"ONEPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "ONEPIPE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "ONEPIPE_KAFKA_SASL_USERNAME": "onepipe",
        "ONEPIPE_KAFKA_SASL_PASSWORD": "s3cret-pw"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No ONEPIPE_KAFKA_* from the caller's environment; a data dir of the test's own."""
    for name in list(Settings.model_fields):
        if name.startswith("kafka_"):
            monkeypatch.delenv(f"ONEPIPE_{name.upper()}", raising=False)
    monkeypatch.setenv("ONEPIPE_DATA_DIR", str(tmp_path / "data"))
    return monkeypatch


def test_sasl_over_tls_is_read_from_the_environment(env: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    cafile, _ = self_signed(tmp_path)
    for name, value in {**SASL, "ONEPIPE_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
                        "ONEPIPE_KAFKA_SSL_CAFILE": str(cafile)}.items():
        env.setenv(name, value)
    settings = load_settings()
    security = settings.kafka.security
    assert (security.protocol, security.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-256")
    assert (security.sasl_username, security.sasl_password) == ("onepipe", "s3cret-pw")
    assert security.ssl_cafile == str(cafile)
    assert "s3cret-pw" not in repr(settings) and "s3cret-pw" not in repr(settings.kafka)


def test_plaintext_is_the_default(env: pytest.MonkeyPatch) -> None:
    options = load_settings().kafka.security.client_options()
    assert options == {"security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"ONEPIPE_KAFKA_SECURITY_PROTOCOL": "TLS"}, "ONEPIPE_KAFKA_SECURITY_PROTOCOL"),
        ({**SASL, "ONEPIPE_KAFKA_SASL_MECHANISM": "GSSAPI"}, "ONEPIPE_KAFKA_SASL_MECHANISM"),
        ({**SASL, "ONEPIPE_KAFKA_SASL_USERNAME": ""}, "needs ONEPIPE_KAFKA_SASL_USERNAME"),
        ({"ONEPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"},
         "needs ONEPIPE_KAFKA_SASL_MECHANISM, ONEPIPE_KAFKA_SASL_USERNAME, "
         "ONEPIPE_KAFKA_SASL_PASSWORD"),
        ({"ONEPIPE_KAFKA_SASL_MECHANISM": "PLAIN", "ONEPIPE_KAFKA_SASL_USERNAME": "u"},
         "ONEPIPE_KAFKA_SASL_MECHANISM, ONEPIPE_KAFKA_SASL_USERNAME set, but "
         "ONEPIPE_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not authenticate"),
        ({"ONEPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", **{
            k: v for k, v in SASL.items() if k != "ONEPIPE_KAFKA_SECURITY_PROTOCOL"},
          "ONEPIPE_KAFKA_SSL_CAFILE": "{cert}"},
         "ONEPIPE_KAFKA_SSL_CAFILE set, but ONEPIPE_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT "
         "uses no TLS"),
        ({"ONEPIPE_KAFKA_SECURITY_PROTOCOL": "SSL", "ONEPIPE_KAFKA_SSL_CAFILE": "{missing}"},
         "ONEPIPE_KAFKA_SSL_CAFILE"),
        ({"ONEPIPE_KAFKA_SECURITY_PROTOCOL": "SSL", "ONEPIPE_KAFKA_SSL_CAFILE": "{garbage}"},
         "cannot build the TLS context from ONEPIPE_KAFKA_SSL_CAFILE="),
        ({"ONEPIPE_KAFKA_SECURITY_PROTOCOL": "SSL", "ONEPIPE_KAFKA_SSL_KEYFILE": "{key}"},
         "ONEPIPE_KAFKA_SSL_KEYFILE is set without ONEPIPE_KAFKA_SSL_CERTFILE"),
        ({**SASL, "ONEPIPE_KAFKA_SSL_CERTFILE": "{cert}", "ONEPIPE_KAFKA_SSL_KEYFILE": "{key}",
          "ONEPIPE_KAFKA_SSL_KEY_PASSWORD": "wrong-pw"},
         "is the key password right?"),
    ],
)
def test_wrong_combinations_fail_naming_the_variable(
    env: pytest.MonkeyPatch, tmp_path: Path, values: dict[str, str], named: str
) -> None:
    cert, key = self_signed(tmp_path, password="key-pw")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    files = {"cert": cert, "key": key, "garbage": garbage, "missing": tmp_path / "absent.pem"}
    for name, value in values.items():
        env.setenv(name, value.format(**files))
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert named in info.value.message
    assert "s3cret-pw" not in info.value.message and "wrong-pw" not in info.value.message


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"ONEPIPE_KAFKA_SECURITY_PROTOCOL": "SSL", "ONEPIPE_KAFKA_SSL_CAFILE": "{cert}"},
        {**SASL, "ONEPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
         "ONEPIPE_KAFKA_SASL_MECHANISM": "PLAIN"},
        {**SASL, "ONEPIPE_KAFKA_SSL_CAFILE": "{cert}", "ONEPIPE_KAFKA_SSL_CERTFILE": "{cert}",
         "ONEPIPE_KAFKA_SSL_KEYFILE": "{key}", "ONEPIPE_KAFKA_SSL_KEY_PASSWORD": "key-pw"},
    ],
)
def test_faust_connects_with_the_same_settings(env: pytest.MonkeyPatch, tmp_path: Path,
                                               values: dict[str, str]) -> None:
    """Faust's consumer and producer (developer agents) get what onepipe's clients get."""
    cert, key = self_signed(tmp_path, password="key-pw")
    for name, value in values.items():
        env.setenv(name, value.format(cert=cert, key=key))
    settings = load_settings()
    app, _runtime = create_app(settings)
    faust_options = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    # Faust passes ssl_context=None for SASL_PLAINTEXT, which aiokafka takes as no TLS.
    set_options = {k: v for k, v in faust_options.items() if v is not None}
    assert set_options == settings.kafka.security.client_options()
