"""The image (Dockerfile) and the compose stack (docs/compose.yaml), checked without Docker.

No Docker engine runs where the suite runs: what can be checked is checked on the files
and against a real worker - the entry point is the package's console script, the
HEALTHCHECK line exits 0 against a worker's /healthz and non-zero against a closed port,
every ONEPIPE_* variable either file sets is a setting, and the final stage holds no
build tools.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from onepipe.app.catalog import load_catalog
from onepipe.app.cli import _parser
from onepipe.app.embedded import free_port
from onepipe.app.settings import ENV_PREFIX, Settings, load_settings
from tests.fixtures.paths import REPO
from tests.fixtures.services import unique, wait_for
from tests.fixtures.worker_process import WorkerProcess

COMPOSE = REPO / "docs" / "compose.yaml"
#: What a final stage must not install or hold (compilers, headers, build front-ends).
BUILD_TOOLS = ("build-essential", "gcc", "g++", "make", "-dev ", "apt-get install")


def instructions(text: str) -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined."""
    joined = text.replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


DOCKERFILE = instructions((REPO / "Dockerfile").read_text())


def stages() -> list[list[tuple[str, str]]]:
    """Instructions per build stage (each starting at its FROM)."""
    result: list[list[tuple[str, str]]] = []
    for word, rest in DOCKERFILE:
        if word == "FROM":
            result.append([])
        if result:
            result[-1].append((word, rest))
    return result


def image_env() -> dict[str, str]:
    """ENV of the final stage (``ENV A=1 B=2`` form)."""
    env: dict[str, str] = {}
    for word, rest in stages()[-1]:
        if word == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def exec_form(word: str) -> list[str]:
    (rest,) = [rest for w, rest in stages()[-1] if w == word]
    return list(json.loads(rest))


def healthcheck() -> list[str]:
    (rest,) = [rest for w, rest in stages()[-1] if w == "HEALTHCHECK"]
    _, _, command = rest.partition("CMD ")
    return list(json.loads(command))


def test_the_entry_point_is_the_packages_worker_command() -> None:
    assert exec_form("ENTRYPOINT") == ["onepipe"]
    assert exec_form("CMD") == ["worker"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["onepipe"] == "onepipe.app.cli:main"
    assert _parser().parse_args(exec_form("CMD")).command == "worker"
    assert Path(sys.executable).with_name("onepipe").exists()  # installed as a script


def test_the_final_stage_is_slim_unprivileged_and_holds_no_build_tools() -> None:
    build, final = stages()[0], stages()[-1]
    assert len(stages()) == 2
    arg = next(rest for word, rest in DOCKERFILE if word == "ARG")
    assert arg.startswith("PYTHON_IMAGE=python:3.11-slim")
    assert final[0] == ("FROM", "${PYTHON_IMAGE}")
    assert any("build-essential" in rest for _, rest in build)
    final_text = " ".join(rest for _, rest in final) + " "
    assert not [tool for tool in BUILD_TOOLS if tool in final_text]
    assert ("COPY", "--from=build /opt/onepipe /opt/onepipe") in final
    user = next(rest for word, rest in final if word == "USER")
    assert user not in ("root", "0")
    assert ("VOLUME", "/data") in final and ("EXPOSE", "8080") in final
    env = image_env()
    assert env["ONEPIPE_WEB_HOST"] == "0.0.0.0"
    assert env["ONEPIPE_DATA_DIR"] == "/data"
    assert "/opt/onepipe/bin" in env["PATH"]
    assert (REPO / ".dockerignore").exists()


def test_every_onepipe_variable_the_image_sets_is_a_setting() -> None:
    fields = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    assert {name for name in image_env() if name.startswith(ENV_PREFIX)} <= fields


@pytest.fixture
def worker_env(broker: str, tmp_path: Path) -> dict[str, str]:
    """The image's ONEPIPE_* environment (data dir aside) on the session broker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update({k: v for k, v in image_env().items() if k.startswith(ENV_PREFIX)})
    env.update(ONEPIPE_BROKER=broker, ONEPIPE_REGISTRY_TOPIC=unique("_registry"),
               ONEPIPE_IDEMPOTENT_PRODUCER="false", ONEPIPE_DATA_DIR=str(tmp_path / "data"),
               ONEPIPE_SESSION_TIMEOUT="6", ONEPIPE_REBALANCE_TIMEOUT="6",
               ONEPIPE_APP_ID=unique("onepipe"), ONEPIPE_SINKS_ENABLED="false",
               ONEPIPE_COMPACT_WORKERS_ENABLED="false")
    return env


async def run_healthcheck(port: int) -> int:
    """The HEALTHCHECK command as Docker runs it, with this venv's python."""
    command = healthcheck()
    assert command[0] == "python"
    env = {**os.environ, "ONEPIPE_WEB_PORT": str(port)}
    process = await asyncio.create_subprocess_exec(sys.executable, *command[1:], env=env,
                                                   stderr=asyncio.subprocess.DEVNULL)
    return await process.wait()


async def test_the_healthcheck_passes_on_a_worker_and_fails_on_a_closed_port(
        worker_env: dict[str, str], tmp_path: Path) -> None:
    worker = WorkerProcess(worker_env, tmp_path / "worker.log")
    try:
        await wait_for(worker.healthy, timeout=60, what="worker")
        assert await run_healthcheck(worker.port) == 0
    finally:
        worker.stop()
    assert await run_healthcheck(free_port()) != 0
    assert await run_healthcheck(worker.port) != 0  # stopped: nothing listens any more


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def onepipe_services() -> dict[str, dict[str, Any]]:
    return {name: service for name, service in compose()["services"].items()
            if service.get("image") == "onepipe:local"}


def test_compose_runs_kafka_minio_postgres_and_two_workers() -> None:
    services = compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft
    assert services["minio"]["image"].startswith("minio/minio")
    assert "mc mb" in " ".join(services["bucket"]["command"])
    assert services["postgres"]["image"].startswith("postgres:")
    workers = {name for name, s in onepipe_services().items() if "command" not in s}
    assert workers == {"worker-1", "worker-2"}
    for name in workers:
        assert onepipe_services()[name]["build"] == {"context": "..", "dockerfile": "Dockerfile"}
        assert (COMPOSE.parent / ".." / "Dockerfile").exists()
    ports = [p for s in services.values() for p in s.get("ports", [])]
    assert len(ports) == len(set(ports))


@pytest.mark.parametrize("service", ["apply", "worker-1", "worker-2"])
def test_compose_sets_only_real_settings_and_valid_values(
        service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = onepipe_services()[service]["environment"]
    fields = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    assert {name for name in env if name.startswith(ENV_PREFIX)} <= fields
    assert env["ONEPIPE_IDEMPOTENT_PRODUCER"] == "true"  # Apache Kafka: idempotent producer
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    settings = load_settings()  # raises ConfigError naming a wrong variable
    assert settings.broker == "kafka:9092" and settings.resolved_lake_url.startswith("s3://")


def test_compose_mounts_a_catalog_whose_sinks_it_configures(tmp_path: Path) -> None:
    apply = onepipe_services()["apply"]
    assert apply["command"] == ["apply", "/catalog"]
    for volume in apply["volumes"]:
        source, target, _ = volume.split(":")
        (tmp_path / Path(target).name).write_bytes((COMPOSE.parent / source).read_bytes())
    (entry,) = load_catalog(tmp_path)
    env = onepipe_services()["worker-1"]["environment"]
    for sink in entry.entry["sinks"]:
        assert env[sink["dsn_env"]].startswith("postgresql://")
        assert "@postgres:5432/" in env[sink["dsn_env"]]  # the compose service
