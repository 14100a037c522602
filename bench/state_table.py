"""Cost of a table update inside an agent: ``counts[k] += 1``, ns per operation.

    .venv/bin/python bench/state_table.py [--keys 10000] [--ops 1000000] [--batch 10000]

A ``Table`` on a real RocksDB store (temp folder), activated as the runner does; ``ops``
updates over ``keys`` distinct string keys, in batches of ``batch`` operations, each
batch committed (keys serialized, one WriteBatch). Prints ns/op of the updates alone and
with the commits included. The batch agent's budget: the whole agent >= 0.15 of a raw
consume (~1.5M rec/s), so the table part must cost well under 1 µs an update.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

from onepipe.tables.state import (  # noqa: E402
    CURRENT,
    PartitionState,
    StateStore,
    Table,
    activate,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--ops", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    rng = random.Random(7)
    names = [f"widget-{i:08d}" for i in range(args.keys)]
    keys = [rng.choice(names) for _ in range(args.ops)]
    counts = Table("counts", default=0)
    with tempfile.TemporaryDirectory() as folder:
        state = PartitionState(StateStore(Path(folder) / "s"), [counts], agent="bench")
        token = activate(state)
        updating = committing = 0.0
        try:
            for start in range(0, args.ops, args.batch):
                batch = keys[start:start + args.batch]
                began = time.perf_counter()
                for k in batch:
                    counts[k] += 1
                middle = time.perf_counter()
                state.commit(start + len(batch), None)
                updating += middle - began
                committing += time.perf_counter() - middle
            assert sum(v for _, v in counts.items()) == args.ops
        finally:
            CURRENT.reset(token)
            state.close()
    per_op = updating / args.ops * 1e9
    with_commit = (updating + committing) / args.ops * 1e9
    print(f"counts[k] += 1: {per_op:.0f} ns/op ({args.keys} keys, {args.ops} ops, "
          f"batches of {args.batch}); {with_commit:.0f} ns/op with the commits")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
