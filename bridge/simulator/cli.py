"""``infoway-bridge simulate``: run the simulator until SIGINT or SIGTERM.

The main CLI wires :func:`add_simulate_arguments` and :func:`run_simulate` into its
``simulate`` sub-command; ``python -m bridge.simulator`` runs the same thing on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Sequence
from pathlib import Path

from bridge.records import Stream
from bridge.simulator.server import (
    DEFAULT_API_KEY,
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_RATE,
    Simulator,
    SimulatorOptions,
)

logger = logging.getLogger("bridge.simulator")

DESCRIPTION = (
    "Serve the vendor's WebSocket protocol locally at ws://HOST:PORT/ws?business=<stock|crypto|common|"
    "japan|india>&apikey=KEY: a wrong key is refused with HTTP 401, subscriptions are acked with their "
    "trace, and every subscribed code gets synthetic trades, depth and klines shaped like the production "
    "frames until it is unsubscribed. Runs until SIGINT or SIGTERM."
)
EPILOG = "example: infoway-bridge simulate --port 8765 --rate 1000 --api-key demo-key --seed 7 --record-sent sent.jsonl"
DEFAULT_SUMMARY_SECONDS = 5.0


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's options to ``parser`` (and its description, if it has none)."""
    if parser.description is None:
        parser.description = DESCRIPTION
    if parser.epilog is None:
        parser.epilog = EPILOG
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help="TCP port to listen on; 0 picks a free one, shown in the start line (default: %(default)s)",
    )
    parser.add_argument(
        "--api-key",
        default=DEFAULT_API_KEY,
        help="the only API key the handshake accepts; any other, or none, gets HTTP 401 (default: %(default)s)",
    )
    parser.add_argument(
        "--rate",
        type=_rate,
        default=DEFAULT_RATE,
        metavar="PER_SECOND",
        help="trade pushes per second in total, spread round-robin over every subscribed "
        "(connection, code) pair (default: %(default)g)",
    )
    parser.add_argument(
        "--depth-rate",
        type=_rate,
        metavar="PER_SECOND",
        help="depth pushes per second in total, spread the same way (default: same as --rate)",
    )
    parser.add_argument(
        "--kline-rate",
        type=_rate,
        metavar="PER_SECOND",
        help="kline pushes per second in total, cycling over subscribed (code, interval) pairs "
        "(default: max(1, rate / 10))",
    )
    parser.add_argument(
        "--max-pushes",
        type=_count,
        metavar="N",
        help="stop sending trade pushes after N in total over all connections; depth and klines "
        "go on (default: unlimited)",
    )
    parser.add_argument(
        "--max-depth-pushes",
        type=_count,
        metavar="N",
        help="stop sending depth pushes after N in total (default: unlimited)",
    )
    parser.add_argument(
        "--max-kline-pushes",
        type=_count,
        metavar="N",
        help="stop sending kline pushes after N in total (default: unlimited)",
    )
    parser.add_argument(
        "--record-sent",
        type=Path,
        metavar="FILE",
        help='append one JSON line per push sent, {"business": ..., "frame": "<the exact text>"}, '
        "flushed every 10 ms and at shutdown (default: no record)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        help="seed of the prices and sizes, for a reproducible run (default: a random seed, shown in the start line)",
    )
    parser.add_argument(
        "--summary-every",
        type=_rate,
        default=DEFAULT_SUMMARY_SECONDS,
        metavar="SECONDS",
        help="log pushes sent per stream and open connections this often; 0 turns it off (default: %(default)g)",
    )


def options_from_args(args: argparse.Namespace) -> SimulatorOptions:
    """The :class:`SimulatorOptions` that parsed arguments describe.

    Raises:
        ValueError: a combination the options refuse.
    """
    return SimulatorOptions(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        rate=args.rate,
        depth_rate=args.depth_rate,
        kline_rate=args.kline_rate,
        max_pushes=args.max_pushes,
        max_depth_pushes=args.max_depth_pushes,
        max_kline_pushes=args.max_kline_pushes,
        record_sent=args.record_sent,
        seed=args.seed,
    )


def run_simulate(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM, then shut down cleanly.

    Logging is configured at INFO on stderr unless the caller configured it already.

    Returns:
        0 after a signal, 1 if the server could not start, 2 for invalid options.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        options = options_from_args(args)
    except ValueError as exc:
        logger.error("invalid simulator options: %s", exc)
        return 2
    try:
        asyncio.run(_serve_until_signalled(options, args.summary_every))
    except OSError as exc:
        logger.error("simulator could not start: %s", exc)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bridge.simulator``: the ``simulate`` command without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="python -m bridge.simulator")
    add_simulate_arguments(parser)
    return run_simulate(parser.parse_args(argv))


async def _serve_until_signalled(options: SimulatorOptions, summary_every: float) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)

    def on_signal(received: signal.Signals) -> None:
        logger.info("%s received: stopping (again to force)", received.name)
        stop.set()
        # A second signal gets the default behaviour, so a stuck shutdown can still be killed.
        loop.remove_signal_handler(received)

    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        async with Simulator(options) as sim:
            summary = asyncio.create_task(_summarize(sim, summary_every)) if summary_every > 0 else None
            try:
                await stop.wait()
            finally:
                if summary is not None:
                    summary.cancel()
                    await asyncio.gather(summary, return_exceptions=True)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


async def _summarize(sim: Simulator, every: float) -> None:
    """Log a summary line every ``every`` seconds until cancelled; safe to cancel."""
    loop = asyncio.get_running_loop()
    last_time = loop.time()
    last_sent = dict(sim.stats.pushes_sent)
    while True:
        await asyncio.sleep(every)
        now = loop.time()
        sent = dict(sim.stats.pushes_sent)
        elapsed = max(now - last_time, 1e-9)
        per_stream = " ".join(
            f"{stream}={sent[stream]} ({(sent[stream] - last_sent[stream]) / elapsed:.0f}/s)" for stream in Stream
        )
        logger.info(
            "sent %s; connections=%d skipped_slow_client=%d",
            per_stream,
            sim.stats.connections,
            sim.stats.pushes_skipped,
        )
        last_time, last_sent = now, sent


def _port(text: str) -> int:
    value = _integer(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, not {value}")
    return value


def _count(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {value}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    # The comparison is False for NaN, so NaN is refused too.
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
