"""Loading developers' agents and checking them at start: every error names its cause.

Agent modules are written into a temporary folder on ``sys.path``, each test under its
own package name, so their declarations never meet another test's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

import onepipe
from onepipe.agents.framework import AgentLoadError, check_agents, declared, load_agents
from onepipe.app.embedded import free_port
from onepipe.app.runtime import Runtime
from onepipe.schemas.errors import ConfigError
from tests.fixtures.services import unique
from tests.fixtures.topics import create_topic

ONEPIPE = str(Path(sys.executable).with_name("onepipe"))
WIDGET = {"type": "record", "name": "W", "fields": [
    {"name": "widget_id", "type": "string"}, {"name": "price", "type": "double"}]}


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A fresh package name on sys.path, and its folder."""
    name = unique("agentpkg").replace("-", "_")
    folder = tmp_path / name
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name, folder


AGENT = '''
import onepipe

@onepipe.agent("{topic}", name="{name}")
async def fn(stream):
    async for _ in stream:
        pass
'''


def test_the_agents_of_a_module_and_its_submodules_are_loaded(
        package: tuple[str, Path]) -> None:
    name, folder = package
    (folder / "one.py").write_text(AGENT.format(topic="widgets", name=f"{name}-one"))
    (folder / "sub").mkdir()
    (folder / "sub" / "__init__.py").write_text(
        f"from {name}.sub import two\n")
    (folder / "sub" / "two.py").write_text(AGENT.format(topic="widgets", name=f"{name}-two"))
    specs = load_agents([f"{name}.one", f" {name}.sub "], entry_points=False)
    assert [s.name for s in specs] == [f"{name}-one", f"{name}-two"]
    assert {s.kind for s in specs} == {"record"} and specs[1].module == f"{name}.sub.two"


def test_a_missing_module_names_the_setting(package: tuple[str, Path]) -> None:
    name, _ = package
    with pytest.raises(AgentLoadError, match=rf"cannot import agent module '{name}.gone' "
                       r"\(from ONEPIPE_AGENTS\): No module named"):
        load_agents([f"{name}.gone"], entry_points=False)


def test_a_module_raising_on_import_names_its_cause(package: tuple[str, Path]) -> None:
    name, folder = package
    (folder / "broken.py").write_text("raise KeyError('no such setting ACME_TOPIC')\n")
    with pytest.raises(AgentLoadError, match=rf"agent module '{name}.broken' .*failed while "
                       r"importing: KeyError: .*ACME_TOPIC"):
        load_agents([f"{name}.broken"], entry_points=False)


def test_a_module_without_agents_says_what_to_do(package: tuple[str, Path]) -> None:
    name, folder = package
    (folder / "empty.py").write_text("X = 1\n")
    with pytest.raises(AgentLoadError, match="declares no agent; did you forget to import"):
        load_agents([f"{name}.empty"], entry_points=False)


def test_two_agents_of_one_name_are_refused_naming_both(package: tuple[str, Path]) -> None:
    name, folder = package
    (folder / "a.py").write_text(AGENT.format(topic="widgets", name=f"{name}-same"))
    (folder / "b.py").write_text(AGENT.format(topic="other", name=f"{name}-same"))
    load_agents([f"{name}.a"], entry_points=False)
    with pytest.raises(AgentLoadError, match=rf"two agents are named '{name}-same': "
                       rf"{name}.a.fn and {name}.b.fn"):
        load_agents([f"{name}.b"], entry_points=False)


def test_declaring_checks_the_function_and_the_send_targets() -> None:
    with pytest.raises(ConfigError, match="decorates an `async def` function"):
        onepipe.agent("widgets", name=unique("sync"))(
            lambda stream: None)  # type: ignore[arg-type,return-value] # the mistake under test
    with pytest.raises(ConfigError, match="needs the topic names"):
        onepipe.batch_agent()


@dataclass(frozen=True)
class WrongWidget:
    widget_id: int  # a string in the schema
    price: float


@dataclass(frozen=True)
class Widget:
    widget_id: str
    price: float


async def test_start_checks_name_every_problem(
    runtime: Runtime, http: aiohttp.ClientSession,
) -> None:
    topic, other, missing = unique("w"), unique("w2"), unique("missing")
    for t in (topic, other):
        await create_topic(http, t, WIDGET, partitions=2, key=["widget_id"],
                           order={"rule": "first"})
    table = onepipe.Table("seen", default=0)

    @onepipe.agent(topic, name=unique("typed"), record=Widget, sends=[other])
    async def fits(stream: onepipe.Stream[Widget]) -> None:
        async for _ in stream:
            pass

    @onepipe.agent(missing, name=unique("unknown"), sends=[unique("nowhere")])
    async def unknown(stream: onepipe.Stream[dict[str, object]]) -> None:
        async for _ in stream:
            pass

    @onepipe.batch_agent(topic, name=unique("wrong"), record=WrongWidget)
    async def wrong(batch: onepipe.Batch[WrongWidget]) -> None:
        pass

    @onepipe.batch_agent(topic, other, name=unique("two"), tables=[table])
    async def two(batch: onepipe.Batch[dict[str, object]]) -> None:
        pass

    specs = {s.fn: s for s in declared()}
    check_agents([specs[fits]], runtime.registry.state)  # passes
    with pytest.raises(AgentLoadError) as caught:
        check_agents([specs[f] for f in (fits, unknown, wrong, two)], runtime.registry.state)
    message = caught.value.message
    assert f"reads topic {missing!r}, which is not registered" in message
    assert "register it: onepipe apply <catalog folder>" in message
    assert "sends to topic" in message
    assert "WrongWidget.widget_id" in message
    assert f"reads 2 topics [{topic!r}, {other!r}]; an agent with state reads exactly one" \
        in message
    assert message.count(specs[fits].name) == 0


def _worker_env(broker: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEPIPE_")}
    return {**env, "ONEPIPE_BROKER": broker, "ONEPIPE_IDEMPOTENT_PRODUCER": "false",
            "ONEPIPE_DATA_DIR": str(tmp_path / "data"), "ONEPIPE_WEB_PORT": str(free_port()),
            "ONEPIPE_REGISTRY_TOPIC": unique("_reg"), "ONEPIPE_ARCHIVE_ENABLED": "false",
            "ONEPIPE_DEDUP_ENABLED": "false", "ONEPIPE_CHECKSUMS_ENABLED": "false",
            "ONEPIPE_SINKS_ENABLED": "false", "ONEPIPE_COMPACT_WORKERS_ENABLED": "false",
            "PYTHONPATH": str(tmp_path), "COLUMNS": "250", **extra}


def test_a_worker_whose_agent_reads_an_unregistered_topic_exits_with_the_message(
    broker: str, tmp_path: Path,
) -> None:
    name = unique("startpkg").replace("-", "_")
    topic = unique("unregistered")
    (tmp_path / f"{name}.py").write_text(AGENT.format(topic=topic, name=f"{name}-agent"))
    env = _worker_env(broker, tmp_path, ONEPIPE_AGENTS=name)
    listed = subprocess.run([ONEPIPE, "agents"], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert listed.returncode == 0, listed.stderr
    assert f"{name}-agent" in listed.stdout and topic in listed.stdout
    result = subprocess.run([ONEPIPE, "worker"], env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"error: agent '{name}-agent' reads topic '{topic}', which is not registered (no "
        "metadata or no schema); register it: onepipe apply <catalog folder>")


def test_onepipe_agents_exits_2_on_a_load_error(broker: str, tmp_path: Path) -> None:
    env = _worker_env(broker, tmp_path, ONEPIPE_AGENTS="no_such_agents_pkg")
    result = subprocess.run([ONEPIPE, "agents"], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot import agent module 'no_such_agents_pkg'")
    assert "Traceback" not in result.stderr


