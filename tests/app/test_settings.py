"""Settings: read from ONEPIPE_* variables, wrong values name the variable."""

from __future__ import annotations

import pytest

from onepipe.app.settings import load_settings
from onepipe.schemas.errors import ConfigError


def test_defaults_are_documented_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ONEPIPE_BROKER", "ONEPIPE_WEB_PORT", "ONEPIPE_LAKE_URL", "ONEPIPE_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    settings = load_settings()
    assert settings.broker == "127.0.0.1:9092"
    assert settings.web_port == 8080
    assert settings.max_request_bytes == 8 * 1024 * 1024
    assert settings.resolved_lake_url.startswith("file://")
    assert settings.resolved_lake_url.endswith("/data/lake")


def test_environment_values_are_read_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONEPIPE_BROKER", "kafka://k1:9093, k2:9094")
    monkeypatch.setenv("ONEPIPE_WEB_PORT", "9999")
    monkeypatch.setenv("ONEPIPE_LAKE_URL", "s3://bucket/prefix")
    monkeypatch.setenv("ONEPIPE_IDEMPOTENT_PRODUCER", "false")
    settings = load_settings()
    assert settings.broker == "k1:9093,k2:9094"
    assert settings.web_port == 9999
    assert settings.resolved_lake_url == "s3://bucket/prefix"
    assert settings.idempotent_producer is False


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("ONEPIPE_WEB_PORT", "eighty", "ONEPIPE_WEB_PORT"),
        ("ONEPIPE_WEB_PORT", "70000", "ONEPIPE_WEB_PORT"),
        ("ONEPIPE_BROKER", "no-port-here", "expected host:port"),
        ("ONEPIPE_LAKE_URL", "ftp://x", "s3://bucket/prefix"),
        ("ONEPIPE_LOG_LEVEL", "LOUD", "ONEPIPE_LOG_LEVEL"),
        ("ONEPIPE_MAX_REQUEST_BYTES", "10", "ONEPIPE_MAX_REQUEST_BYTES"),
        ("ONEPIPE_EVENT_LOOP", "trio", "ONEPIPE_EVENT_LOOP"),
    ],
)
def test_wrong_values_fail_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert var in info.value.message
    assert expected in info.value.message
    assert repr(value) in info.value.message


def test_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigError, match="ONEPIPE_NOT_A_SETTING"):
        load_settings(not_a_setting=1)
