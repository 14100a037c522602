"""The dedup table: winner encoding round trips, atomic apply with the applied offset."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rocksdict import Options, Rdict

from onepipe.schemas.errors import OnepipeError
from onepipe.tables.dedup.store import (
    DedupStore,
    StoreClosedError,
    Winner,
    decode_winner,
    encode_winner,
)
from onepipe.tables.unlogged_store import META

ints = st.integers(min_value=-(2**100), max_value=2**100)
positions = st.integers(min_value=0, max_value=2**31 - 1), st.integers(min_value=0,
                                                                       max_value=2**62)


@given(ints, st.binary(max_size=300), *positions)
def test_rank_ending_in_the_value_round_trips(first: int, value: bytes, partition: int,
                                              offset: int) -> None:
    winner = Winner((first, value), value, partition, offset)
    assert decode_winner(encode_winner(winner)) == winner


@given(ints, ints, st.binary(max_size=300), *positions)
def test_rank_of_two_ints_round_trips(first: int, second: int, value: bytes, partition: int,
                                      offset: int) -> None:
    winner = Winner((first, second), value, partition, offset)
    assert decode_winner(encode_winner(winner)) == winner


def test_a_rank_ending_in_other_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="value bytes"):
        encode_winner(Winner((1, b"other"), b"value", 0, 0))


def test_apply_is_durable_with_its_offset_and_close_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "t" / "0"
    store = DedupStore(path)
    assert store.applied_offset == 0
    assert store.get_many([b"a"]) == [None]
    a = Winner((3, b"\x00v3"), b"\x00v3", 0, 10)
    store.apply([b"a", b"b"], [a, Winner((-1, -7), b"x", 1, 7)], 42)
    store.close()
    store.close()
    with pytest.raises(StoreClosedError, match="closed"):
        store.get_many([b"a"])
    with DedupStore(path) as reopened:
        assert reopened.applied_offset == 42
        assert reopened.get_many([b"a", b"c", b"b"]) == [a, None,
                                                         Winner((-1, -7), b"x", 1, 7)]
        assert reopened.disk_bytes() > 0


def test_a_key_cannot_collide_with_the_meta_data(tmp_path: Path) -> None:
    with DedupStore(tmp_path / "db") as store:
        store.apply([b"applied"], [Winner((1, b"v"), b"v", 0, 0)], 5)
        assert store.get_many([b"applied"])[0] == Winner((1, b"v"), b"v", 0, 0)
    with DedupStore(tmp_path / "db") as store:
        assert store.applied_offset == 5


@given(st.lists(st.tuples(st.binary(min_size=1, max_size=8),
                          st.one_of(st.integers(-(2**63), 2**63 - 1),
                                    st.integers(2**63, 2**80), st.integers(-(2**80), -(2**63) - 1)),
                          st.booleans(), st.binary(max_size=20)), max_size=20))
def test_apply_stores_what_get_many_reads_back_for_every_rank_kind(
        tmp_path_factory: pytest.TempPathFactory,
        items: list[tuple[bytes, int, bool, bytes]]) -> None:
    """Inline-encoded ranks (int64, ending in the value) and the general encoding (big
    ints, two ints) in one batch: every winner reads back as it was written."""
    winners = {key: Winner((first, value) if ends_in_value else (first, -first), value, 3, 9)
               for key, first, ends_in_value, value in items}
    with DedupStore(tmp_path_factory.mktemp("db")) as store:
        store.apply(list(winners), list(winners.values()), 11)
        assert store.get_many(list(winners)) == list(winners.values())
        assert store.applied_offset == 11


def test_keys_and_winners_out_of_step_are_refused_and_nothing_is_written(tmp_path: Path
                                                                        ) -> None:
    with DedupStore(tmp_path / "t" / "0") as store:
        a = Winner((3, b"\x00v3"), b"\x00v3", 0, 10)
        with pytest.raises(OnepipeError, match="index-aligned"):
            store.apply([b"a", b"b"], [a], 42)
        assert store.applied_offset == 0 and store.get_many([b"a"]) == [None]


def test_a_store_killed_right_after_creating_its_meta_family_opens_again(
        tmp_path: Path) -> None:
    # The state a SIGKILL left (seen in the suite): RocksDB's manifest has the ``meta``
    # family, but neither rocksdict's record of the families nor the newest OPTIONS file
    # do, since the kill came before either was written.
    path = tmp_path / "table"
    path.mkdir()
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    Rdict(str(path), options).close()
    config = (path / "rocksdict-config.json").read_text()
    before = set(path.glob("OPTIONS-*"))
    db = Rdict(str(path), options)
    family = db.create_column_family(META, Options(raw_mode=True))
    del family
    db.close()
    for written in set(path.glob("OPTIONS-*")) - before:
        written.unlink()
    (path / "rocksdict-config.json").write_text(config)
    with pytest.raises(Exception, match="Column families not opened: meta"):
        Rdict(str(path), options).close()  # what the store's open did before

    winner = Winner((3, b"\x00v3"), b"\x00v3", 0, 10)
    store = DedupStore(path)
    assert store.applied_offset == 0
    store.apply([b"k"], [winner], 8)
    store.close()
    with DedupStore(path) as reopened:
        assert reopened.applied_offset == 8
        assert reopened.get_many([b"k"]) == [winner]
