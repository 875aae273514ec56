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
from dataclasses import fields
from pathlib import Path

from bridge import arguments
from bridge.records import Stream
from bridge.simulator.gateway import GatewayRules
from bridge.simulator.options import SimulatorOptions
from bridge.simulator.rest import FAULTS
from bridge.simulator.server import Simulator

logger = logging.getLogger("bridge.simulator")

# Both texts are printed as written (RawDescriptionHelpFormatter): argparse's reflowing would
# run the examples together and could break a flag across lines.
DESCRIPTION = """\
Serve the vendor's WebSocket protocol locally at ws://HOST:PORT/ws, with the query parameters
business (stock, crypto, common, japan or india) and apikey. A wrong key is refused with HTTP
401, subscriptions are acked with their trace, and every subscribed code gets synthetic trades,
depth and klines shaped like the production frames until it is unsubscribed.

Like the gateway it enforces 60 client frames per minute per connection (501 and a cut) and
600 codes per connection (505). Fault modes, all off unless asked: abrupt disconnects
(--close-after), heartbeat timeouts (513), a failing Nth subscribe (501 or 505), refused
handshakes (401, 429, 5xx) and bad frames among the pushes (--garbage-every).

GET /sim/stats on the same port answers JSON: each open connection with its codes per stream,
kline intervals and pushes sent, and the totals.

With --rest-port the vendor's REST API is served there too (POST /{business}/v2/batch_kline,
GET /{business}/batch_depth/{codes}, GET /package/info; the key in the apiKey header), from the
same bars the pushes show, with the vendor's error envelope and limits, and the controls
GET /sim/rest-fault?mode=..., GET /sim/offline?seconds=N and GET /sim/rest-stats.

Runs until SIGINT or SIGTERM."""
EXAMPLES = (
    ("a reproducible run, every push recorded", "--port 8765 --rate 1000 --seed 7 --record-sent sent.jsonl"),
    (
        "a flaky feed: cuts, bad frames, heartbeat timeouts",
        "--close-after 5000 --garbage-every 1000 --heartbeat-timeout 45",
    ),
    ("the first two handshakes refused with 503", "--refuse-handshake 503 --refuse-handshakes 2"),
    (
        "REST on port 8766, one 1m bar per second, 20 % quiet minutes",
        "--rest-port 8766 --time-scale 60 --quiet-bar-percent 20",
    ),
)
"""What each example shows, and its flags."""
EPILOG = "examples:\n" + "".join(f"  # {what}\n  infoway-bridge simulate {flags}\n" for what, flags in EXAMPLES)
DEFAULT_SUMMARY_SECONDS = 5.0
_DEFAULTS = SimulatorOptions()


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's options to ``parser`` (and its description, if it has none).

    The parser prints its description and epilog as written, so the examples keep their lines.
    """
    parser.formatter_class = arguments.HelpFormatter
    if parser.description is None:
        parser.description = DESCRIPTION
    if parser.epilog is None:
        parser.epilog = EPILOG
    parser.add_argument("--host", default=_DEFAULTS.host, help="address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port",
        type=arguments.port,
        default=_DEFAULTS.port,
        help="TCP port to listen on; 0 picks a free one, shown in the start line (default: %(default)s)",
    )
    parser.add_argument(
        "--api-key",
        default=_DEFAULTS.api_key,
        help="the only API key the handshake accepts; any other, or none, gets HTTP 401 (default: %(default)s)",
    )
    parser.add_argument(
        "--rate",
        type=arguments.rate,
        default=_DEFAULTS.rate,
        metavar="PER_SECOND",
        help="trade pushes per second in total, spread round-robin over every subscribed "
        "(connection, code) pair (default: %(default)g)",
    )
    parser.add_argument(
        "--depth-rate",
        type=arguments.rate,
        metavar="PER_SECOND",
        help="depth pushes per second in total, spread the same way (default: same as --rate)",
    )
    parser.add_argument(
        "--kline-rate",
        type=arguments.rate,
        metavar="PER_SECOND",
        help="kline pushes per second in total, cycling over subscribed (code, interval) pairs "
        "(default: max(1, rate / 10))",
    )
    parser.add_argument(
        "--max-pushes",
        type=arguments.count,
        metavar="N",
        help="stop sending trade pushes after N in total over all connections; depth and klines "
        "go on (default: unlimited)",
    )
    parser.add_argument(
        "--max-depth-pushes",
        type=arguments.count,
        metavar="N",
        help="stop sending depth pushes after N in total (default: unlimited)",
    )
    parser.add_argument(
        "--max-kline-pushes",
        type=arguments.count,
        metavar="N",
        help="stop sending kline pushes after N in total (default: unlimited)",
    )
    parser.add_argument(
        "--record-sent",
        type=Path,
        metavar="FILE",
        help='append one JSON line per push sent, {"business": ..., "frame": "<the exact text>"}, and per '
        'bad frame of --garbage-every the same with "garbage": <kind> (a binary frame as latin-1 text), '
        "flushed every 10 ms and at shutdown; per stream, (symbol, t) identifies every trade and book push, "
        "t being bumped 1 ms past a repeat (default: no record)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        help="seed of the prices and sizes, for a reproducible run (default: a random seed, shown in the start line)",
    )
    rest = parser.add_argument_group("REST API and market clock")
    rest.add_argument(
        "--rest-port",
        type=arguments.port,
        metavar="PORT",
        help="serve the vendor's REST API on this port; 0 picks a free one, shown in the start line (default: no REST)",
    )
    rest.add_argument(
        "--rest-rate",
        type=arguments.rate,
        default=_DEFAULTS.rest_rate,
        metavar="PER_SECOND",
        help='REST requests per second per key; more get {"detail":"Rate limit exceeded"} on 429 or 200 '
        "(default: %(default)g)",
    )
    rest.add_argument(
        "--rest-history-seconds",
        type=arguments.seconds,
        metavar="SECONDS",
        help="a kline timestamp older than this (market time) is refused with 513 and the earliest allowed time "
        "(default: no limit)",
    )
    rest.add_argument(
        "--rest-fault",
        choices=FAULTS,
        default=_DEFAULTS.rest_fault,
        help="REST fault mode at start: rate-limit (every request), quota (502, daily quota spent), "
        "unauthorized (401), ret500 (a 500 naming no code); GET /sim/rest-fault?mode= changes it "
        "(default: %(default)s)",
    )
    rest.add_argument(
        "--time-scale",
        type=arguments.rate,
        default=_DEFAULTS.time_scale,
        metavar="FACTOR",
        help="market seconds per real second; at 60 a 1m bar lasts one second and event times run ahead "
        "(default: %(default)g)",
    )
    rest.add_argument(
        "--quiet-bar-percent",
        type=arguments.integer_in(0, 90, "a percentage from 0 to 90"),
        default=_DEFAULTS.quiet_bar_percent,
        metavar="PERCENT",
        help="this share of bar intervals has no trades: no kline push, no REST bar (default: %(default)s)",
    )
    faults = parser.add_argument_group(
        "gateway limits and fault modes",
        "The limits are on by default, as in production; every fault is off unless asked for.",
    )
    faults.add_argument(
        "--frame-limit",
        type=arguments.count,
        default=_DEFAULTS.rules.frame_limit,
        metavar="N",
        help="client frames (subscribes, unsubscribes, heartbeats, anything) one connection may send in "
        "--frame-window seconds; the frame past it gets error 501 and the connection is closed; 0 turns "
        "enforcement off (default: %(default)s)",
    )
    faults.add_argument(
        "--frame-window",
        type=arguments.seconds,
        default=_DEFAULTS.rules.frame_window,
        metavar="SECONDS",
        help="the rolling window of --frame-limit, also used to measure the most frames per key (default: %(default)g)",
    )
    faults.add_argument(
        "--max-codes-per-connection",
        type=arguments.count,
        default=_DEFAULTS.rules.max_codes_per_connection,
        metavar="N",
        help="distinct codes one connection may hold over all streams; a subscribe past it is refused with "
        "'Subscribe fail:' and error 505 and adds nothing; 0 means no cap (default: %(default)s)",
    )
    faults.add_argument(
        "--close-after",
        dest="close_after_pushes",
        type=arguments.positive,
        metavar="N",
        help="abort each connection, with no WebSocket close frame, once it has been sent N pushes; "
        "every connection gets its own N (default: never)",
    )
    faults.add_argument(
        "--heartbeat-timeout",
        type=arguments.seconds,
        metavar="SECONDS",
        help="send error 513 and close a connection that sent no heartbeat (10010) for this long, counted "
        "from the handshake and then from its last heartbeat (default: off)",
    )
    faults.add_argument(
        "--fail-subscribe-nth",
        type=arguments.positive,
        metavar="N",
        help="answer the Nth subscribe the server receives, over all connections, with error 501 and close "
        "that connection; only that one (default: off)",
    )
    faults.add_argument(
        "--subscribe-fail-505-nth",
        type=arguments.positive,
        metavar="N",
        help="answer the Nth subscribe the server receives with 'Subscribe fail:' and error 505, adding none "
        "of its codes; the connection stays open (default: off)",
    )
    faults.add_argument(
        "--refuse-handshake",
        dest="refuse_handshake_status",
        type=arguments.http_error_status,
        metavar="STATUS",
        help="refuse handshakes that carry the right key with this HTTP status (401 and 429 with the "
        "vendor's JSON body) (default: off)",
    )
    faults.add_argument(
        "--refuse-handshakes",
        type=arguments.positive,
        metavar="K",
        help="refuse only the first K such handshakes, then accept (default: every handshake while "
        "--refuse-handshake is set)",
    )
    faults.add_argument(
        "--garbage-every",
        type=arguments.positive,
        metavar="N",
        help="after every N pushes on a connection send one bad frame, in turn: text that is not JSON, "
        "truncated JSON, a binary frame, an unknown code, a trade whose price is not a number; recorded "
        'with "garbage": <kind> (default: off)',
    )
    parser.add_argument(
        "--summary-every",
        type=arguments.rate,
        default=DEFAULT_SUMMARY_SECONDS,
        metavar="SECONDS",
        help="log pushes sent per stream and open connections this often; 0 turns it off (default: %(default)g)",
    )


def options_from_args(args: argparse.Namespace) -> SimulatorOptions:
    """The :class:`SimulatorOptions` that parsed arguments describe.

    Raises:
        ValueError: a combination the options refuse.
    """
    # Every flag's dest is the name of the field it sets; fields with no flag keep their defaults.
    given = vars(args)
    rules = GatewayRules(**{rule.name: given[rule.name] for rule in fields(GatewayRules)})
    flagged = {option.name: given[option.name] for option in fields(SimulatorOptions) if option.name in given}
    return SimulatorOptions(**{**flagged, "rules": rules})


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
        stats = sim.stats
        logger.info(
            "sent %s; connections=%d skipped_slow_client=%d garbage=%d aborted=%d budget_violations=%d "
            "heartbeat_timeouts=%d handshakes_refused=%d max_frames_in_window=%d",
            per_stream,
            stats.connections,
            stats.pushes_skipped,
            stats.garbage_sent,
            stats.connections_aborted,
            stats.budget_violations,
            stats.heartbeat_timeouts,
            stats.handshakes_refused,
            stats.max_frames_in_window_per_key,
        )
        last_time, last_sent = now, sent
