"""Runtime start-up against the real broker: failures say what to change."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from onepipe.app.embedded import free_port
from onepipe.app.runtime import Runtime
from onepipe.app.settings import Settings
from onepipe.schemas.errors import BrokerError
from tests.fixtures.services import unique


async def test_idempotent_producer_on_tansu_names_the_setting(
    make_settings: Callable[..., Settings],
) -> None:
    # aiokafka's InitProducerId gets an error from tansu; librdkafka's is answered (its
    # idempotent producer works on tansu: tests/tables/kafka/test_rdkafka_producer.py).
    runtime = Runtime(make_settings(idempotent_producer=True, registry_topic=unique("_reg"),
                                    kafka_client="aiokafka"))
    with pytest.raises(BrokerError, match="ONEPIPE_IDEMPOTENT_PRODUCER=false"):
        await runtime.start()
    await runtime.stop()  # harmless after a failed start


async def test_unreachable_broker_names_the_address(
    make_settings: Callable[..., Settings],
) -> None:
    address = f"127.0.0.1:{free_port()}"
    runtime = Runtime(make_settings(broker=address, produce_timeout=2.0))
    with pytest.raises(BrokerError, match=address):
        await runtime.start()


async def test_stop_twice_is_harmless(make_settings: Callable[..., Settings]) -> None:
    runtime = Runtime(make_settings(registry_topic=unique("_reg")))
    async with runtime:
        assert runtime.ready.is_set()
    await runtime.stop()
    assert not runtime.ready.is_set()
