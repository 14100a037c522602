"""A batch still committing long after the group asked for its partition back does not
count (review finding: without transactions nothing else fences a member out)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

import onepipe
from onepipe.agents.framework.runner import _FENCE_SHARE
from onepipe.app.runtime import Runtime
from onepipe.schemas.errors import OnepipeError
from tests.agents.framework.test_runner import runner, spec_of

marks = onepipe.Table("marks", default=0)


@onepipe.batch_agent("fence-topic", name="test-fence", tables=[marks])
async def fenced(batch: onepipe.Batch[dict[str, Any]]) -> None:
    for _ in batch:
        marks["n"] += 1


def test_a_batch_past_most_of_the_rebalance_timeout_since_the_revoke_request_fails(
        runtime: Runtime, tmp_path: Path) -> None:
    agent = runner(runtime, spec_of(fenced), tmp_path)
    tp = TopicPartition("fence-topic", 0)
    agent._check_still_owner(tp)  # no rebalance asked: commits
    bound = _FENCE_SHARE * runtime.settings.kafka.rebalance_timeout
    agent._revoke_asked = time.monotonic() - bound / 2
    agent._check_still_owner(tp)  # asked, but recently: the batch still counts
    agent._revoke_asked = time.monotonic() - bound - 1
    with pytest.raises(OnepipeError, match=r"fence-topic\[0\] back .* ONEPIPE_REBALANCE_TIMEOUT"):
        agent._check_still_owner(tp)
