"""``onepipe sql`` from the command line: the four output formats, and errors as messages.

The CLI runs in this process (``main``) against a local lake built by the compactor.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from onepipe.app.cli import main
from onepipe.sinks.lake import open_lake
from onepipe.sinks.lake.sql import quote
from tests.fixtures.clean_lake import CleanTopic, build_clean
from tests.fixtures.services import unique


async def _build(tmp_path: Path, topic: str) -> CleanTopic:
    async with open_lake((tmp_path / "lake").as_uri()) as lake:
        return await build_clean(lake, tmp_path, topic, keys=40)


@pytest.fixture
def clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CleanTopic:
    built = asyncio.run(_build(tmp_path, f"{unique('sqlcli')}.v1"))
    monkeypatch.setenv("ONEPIPE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ONEPIPE_LAKE_URL", (tmp_path / "lake").as_uri())
    monkeypatch.setenv("ONEPIPE_ICEBERG_CATALOG_URI",
                       f"sqlite:///{tmp_path / 'lake' / 'iceberg.db'}")
    return built


def test_formats(clean: CleanTopic, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sql = ("SELECT CAST(_kafka_clean_day AS VARCHAR) AS day, count(*) AS n, "
           "CAST(sum(qty) AS BIGINT) AS qty, "
           f"min(_kafka_key) AS k FROM {quote(clean.topic)} GROUP BY 1 ORDER BY 1")

    assert main(["sql", sql, "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["day", "n", "qty", "k"] and len(rows) == 4
    assert sum(int(r[1]) for r in rows[1:]) == 40
    assert bytes.fromhex(rows[1][3]).startswith(b"k0")  # bytes as hex

    assert main(["sql", sql, "--format", "json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["day"], r["n"], r["qty"]) for r in lines] == \
        [(r[0], int(r[1]), int(r[2])) for r in rows[1:]]

    out = tmp_path / "result.parquet"
    assert main(["sql", sql, "--format", "parquet", "--output", str(out)]) == 0
    assert pq.read_table(out).column("n").to_pylist() == [r["n"] for r in lines]

    assert main(["sql", sql]) == 0  # a rich table
    shown = capsys.readouterr().out
    assert "3 row(s)" in shown and lines[0]["day"] in shown


def test_errors_are_messages(clean: CleanTopic, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", "SELECT 1", "--format", "parquet"]) == 2
    assert "--output FILE" in capsys.readouterr().err
    assert main(["sql", f"SELECT nope FROM {quote(clean.topic)}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the query failed") and "nope" in err
    # Unquoted, the dot makes DuckDB read a schema-qualified name: the message says so.
    assert main(["sql", f"SELECT count(*) FROM {clean.topic}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the query failed")
    assert f'Write {clean.topic} as "{clean.topic}"' in err
    assert main(["sql", "SELECT * FROM nothing_here"]) == 1
    assert f'The views here: "{clean.topic}", "raw_{clean.topic}".' in capsys.readouterr().err
