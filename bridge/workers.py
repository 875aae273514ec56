"""``run --workers N``: N bridge processes on one host, one per core, sharing its shards.

One Python process reads, serialises and produces on one core. ``--workers N`` starts N child
processes of ``infoway-bridge run``, each owning a disjoint part of this replica's shards (the
same shards, spools and per-shard transactional ids as the scale-out of several replicas,
:mod:`bridge.replica`):

* ``sharding.mode: none``: worker ``i`` of N owns the shards whose number modulo N is ``i``
  (static ownership within the host; the transactional ids keep the host's stem);
* ``static`` (replica ``r`` of ``c``): worker ``i`` owns the replica's shards ``s`` with
  ``s mod (c x N) == r + c x i``;
* ``group``: every worker is a member of the group (``<instance>.w<i>``), so Kafka spreads the
  shards over all workers of all replicas, and a worker that dies hands its shards on.

The parent serves ``metrics.port``: ``/metrics`` is every worker's metrics with a ``worker``
label added, ``/readyz`` is ready when every worker is. SIGINT/SIGTERM go to every worker, each
flushes as a single process does; the parent waits for them (bounded) and exits with the first
non-zero status. A worker that exits on its own stops the others: the platform restarts the
whole pod, as it would a single process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from bridge.app import transactional_stem
from bridge.config import BridgeConfig
from bridge.config_sharding import ShardingMode
from bridge.errors import ConfigError
from bridge.http import HealthServer
from bridge.protocol.shards import static_shards

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 30
"""How long the workers get beyond ``kafka.flush_timeout_seconds`` to stop before they are killed."""


def worker_config(config: BridgeConfig, index: int, workers: int, metrics_port: int) -> BridgeConfig:
    """Worker ``index`` of ``workers``: its share of the shards, a loopback metrics port, the host's ids.

    Raises:
        ConfigError: static mode with more workers x replicas than shards.
    """
    sharding = config.sharding
    shares: dict[str, object] = {"instance": f"{sharding.instance}.w{index}"}
    replica, replicas = 0, 1  # this host's place among the static replicas (none: the only one)
    if sharding.mode is ShardingMode.STATIC:
        assert sharding.count is not None
        replica, replicas = sharding.static_index, sharding.count
        if replicas * workers > sharding.shards:
            raise ConfigError(
                f"--workers {workers}: {replicas} replicas x {workers} workers is more than "
                f"sharding.shards ({sharding.shards}); raise sharding.shards or use fewer workers"
            )
        shares |= {"index": replica + replicas * index, "count": replicas * workers}
    elif sharding.mode is ShardingMode.NONE:
        if workers > sharding.shards:
            raise ConfigError(f"--workers {workers} is more than sharding.shards ({sharding.shards})")
        shares |= {"mode": ShardingMode.STATIC, "index": index, "count": workers}
    if sharding.mode is not ShardingMode.GROUP:
        # Static within the host: the siblings' shards are known, and their spools are not leftovers.
        siblings = [replica + replicas * other for other in range(workers) if other != index]
        shares["colocated"] = tuple(
            sorted(
                shard for sibling in siblings for shard in static_shards(sibling, replicas * workers, sharding.shards)
            )
        )
    delivery = config.delivery.model_copy(update={"transactional_id": transactional_stem(config)})
    backfill = config.backfill.model_copy(update={"share": config.backfill.share / workers})  # one key's budget
    return config.model_copy(
        update={
            "sharding": sharding.model_copy(update=shares),
            "delivery": delivery,
            "backfill": backfill,
            "metrics": config.metrics.model_copy(update={"host": "127.0.0.1", "port": metrics_port}),
        }
    )


def _fetch(port: int, path: str) -> tuple[int, str]:
    """GET a worker's endpoint: its status and body (status 0: it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError:
        return 0, "not answering"


class WorkerMetrics(Collector):
    """Every worker's metrics, each sample labelled with its ``worker``, merged family by family."""

    def __init__(self, ports: Sequence[int]) -> None:
        self._ports = ports

    def collect(self) -> Iterable[Metric]:
        """Scrape the workers now (loopback, a few milliseconds each)."""
        families: dict[str, Metric] = {}
        for index, port in enumerate(self._ports):
            status, text = _fetch(port, "/metrics")
            if status != 200:
                continue
            for family in text_string_to_metric_families(text):
                merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                worker = str(index)
                merged.samples.extend(
                    sample._replace(labels={**sample.labels, "worker": worker}) for sample in family.samples
                )
        return list(families.values())


def readiness(ports: Sequence[int]) -> tuple[bool, str]:
    """Ready when every worker is; the explanation names each worker's answer."""
    answers = [_fetch(port, "/readyz") for port in ports]
    ready = all(status == 200 for status, _ in answers)
    return ready, "; ".join(f"worker {index}: {body.strip()}" for index, (_, body) in enumerate(answers))


def free_ports(count: int) -> list[int]:
    """``count`` different loopback ports nothing listens on now (the workers' metrics; tests and scripts too).

    The probes stay bound until all are chosen: probing one port at a time can return the same port
    twice, as the kernel may hand a just-closed ephemeral port out again.
    """
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


async def run_workers(config: BridgeConfig, workers: int, child_arguments: Sequence[str]) -> int:
    """Start the workers, serve their metrics, stop them all on a signal or when one ends; returns the status.

    Raises:
        ConfigError: ``metrics.port`` cannot be listened on.
    """
    ports = free_ports(workers)
    registry = CollectorRegistry()
    registry.register(WorkerMetrics(ports))
    health = HealthServer(registry, lambda: readiness(ports))
    try:
        port = await health.start(config.metrics.host, config.metrics.port)
    except OSError as exc:
        raise ConfigError(f"metrics.port: cannot listen on {config.metrics.host}:{config.metrics.port}: {exc}") from exc
    log.info("metrics of %d workers on http://%s:%d/metrics", workers, config.metrics.host, port)
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", *child_arguments, "--worker", f"{index}/{workers}:{ports[index]}"
        )
        for index in range(workers)
    ]
    log.info("started %d workers (pids %s)", workers, ", ".join(str(child.pid) for child in children))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waits = {asyncio.create_task(child.wait()): index for index, child in enumerate(children)}
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({*waits, stopper}, return_when=asyncio.FIRST_COMPLETED)
    ended = [waits[task] for task in done if task in waits]
    if ended:
        log.error("worker %d exited with status %s; stopping the others", ended[0], children[ended[0]].returncode)
    else:
        log.info("stopping %d workers (each flushes Kafka)", workers)
    for child in children:
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
    deadline = config.kafka.flush_timeout_seconds + STOP_GRACE_SECONDS
    try:
        async with asyncio.timeout(deadline):
            await asyncio.gather(*(child.wait() for child in children))
    except TimeoutError:
        log.error("workers still running %gs after SIGTERM; killing them", deadline)
        for child in children:
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
        await asyncio.gather(*(child.wait() for child in children))
    stopper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await stopper
    await health.close()
    statuses = [child.returncode or 0 for child in children]
    return next((status for status in statuses if status), 0)


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))
