"""murmur2 and the default partitioner, checked against aiokafka's implementation."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from onepipe.schemas.partitioner import VECTOR_MAX_LEN, murmur2, murmur2_batch, partitions_for


@given(st.binary(max_size=200))
def test_scalar_murmur2_equals_aiokafka(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data)


@settings(max_examples=60)
@given(st.lists(st.binary(max_size=VECTOR_MAX_LEN + 20), min_size=0, max_size=300))
def test_vectorised_murmur2_equals_aiokafka(keys: list[bytes]) -> None:
    expected = [aiokafka_murmur2(k) for k in keys]
    assert murmur2_batch(keys, vector_from=0) == expected  # column-wise whatever the size
    assert murmur2_batch(keys) == expected


@settings(max_examples=30)
@given(st.lists(st.binary(min_size=1, max_size=40), min_size=40, max_size=200),
       st.integers(min_value=1, max_value=64))
def test_partitions_equal_aiokafka_default_partitioner(keys: list[bytes], count: int) -> None:
    partitioner = DefaultPartitioner()
    all_partitions = list(range(count))
    assert partitions_for(keys, count) == [
        partitioner(k, all_partitions, all_partitions) for k in keys]


def test_every_tail_length_and_block_count_column_wise() -> None:
    # One batch mixing every length 0..64, so masked lanes and tails are all exercised.
    keys = [bytes(range(n)) for n in range(VECTOR_MAX_LEN + 1)] * 2
    assert murmur2_batch(keys, vector_from=0) == [aiokafka_murmur2(k) for k in keys]


def test_long_keys_hash_alone_and_leave_the_rest_column_wise() -> None:
    # Keys past VECTOR_MAX_LEN take the scalar path one by one, in their places.
    keys = [bytes([n % 251]) * n for n in range(0, 3 * VECTOR_MAX_LEN, 3)]
    partitioner = DefaultPartitioner()
    all_partitions = list(range(12))
    assert partitions_for(keys, 12) == [
        partitioner(k, all_partitions, all_partitions) for k in keys]
    assert murmur2_batch(keys) == [aiokafka_murmur2(k) for k in keys]
