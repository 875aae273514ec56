#!/usr/bin/env python3
"""Frames per second the simulator delivers into a client that only counts, as ratios in one run.

Each measurement runs the simulator (``python -m bridge.simulator``) and a counting client as
two processes on 127.0.0.1, so each can have a core: the client subscribes trades for ``--codes``
crypto codes, then counts the WebSocket frames it reads for ``--seconds`` after a warm-up.
Offered rates are the simulator's ``--rate``; depth and klines are off, and so is the frame
budget (the client sends one subscribe).

In the same run:

* ``ceiling``: the counting client fed by a process that writes ready-made frames as fast as the
  socket takes them. It is what the client can count, so a simulator figure well below it
  measures the simulator, not the client;
* ``baseline``: the simulator as it was at ``--baseline`` (a commit of this repository, default
  the one before the fast path), extracted with ``git archive`` and run the same way.

Per run: delivered frames/s, the offered rate met or not, CPU cores used by the simulator and by
the client (utime + stime over the window), and how old a push's ``t`` is when the client reads it
(receipt minus ``t`` in ms, sampled; negative means ``t`` ran ahead of the clock).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any

from bridge.simulator.market import Market

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key"
BASELINE = "1ce2437"
"""The last commit before the simulator's fast path (and before the split of its server)."""
SAMPLE_EVERY = 4096
"""The client reads the ``t`` of one frame in this many."""
_T_FIELD = re.compile(rb'"t":(\d+)')


# -- the counting client (runs in its own process) ------------------------------------------------


def masked_frame(payload: bytes, opcode: int = 1) -> bytes:
    """A client-to-server frame (clients must mask, RFC 6455 section 5.3)."""
    mask = os.urandom(4)
    length = len(payload)
    head = bytes([0x80 | opcode])
    if length < 126:
        head += bytes([0x80 | length])
    else:
        head += bytes([0x80 | 126]) + length.to_bytes(2, "big")
    body = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    return head + mask + body


def open_websocket(port: int, codes: int) -> tuple[socket.socket, bytes]:
    """Connect, upgrade and subscribe; returns the socket and any bytes read past the handshake."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    nonce = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws?business=crypto&apikey={KEY} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the server closed during the handshake")
        received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"handshake refused: {head[:80]!r}")
    names = ",".join(f"C{index:04d}USDT" for index in range(codes))
    subscribe = json.dumps({"code": 10000, "trace": "bench", "data": {"codes": names}}).encode()
    sock.sendall(masked_frame(subscribe))
    return sock, rest


def count_frames(port: int, codes: int, warmup: float, seconds: float) -> dict[str, Any]:
    """Read and count text frames; print a line when the window opens, return the results."""
    sock, pending = open_websocket(port, codes)
    buffer = bytearray(pending)
    chunk = bytearray(1 << 20)
    view = memoryview(chunk)
    frames = 0
    skews: list[int] = []
    started = time.monotonic()
    window_start = started + warmup
    window_end = window_start + seconds
    counted_from = -1
    cpu_start = 0.0
    next_sample = SAMPLE_EVERY
    while True:
        now = time.monotonic()
        if counted_from < 0 and now >= window_start:
            counted_from, cpu_start = frames, time.process_time()
            print("window", flush=True)
        if now >= window_end:
            break
        read = sock.recv_into(chunk)
        if not read:
            break
        buffer += view[:read]
        position, size = 0, len(buffer)
        while size - position >= 2:
            length = buffer[position + 1] & 0x7F
            header = 2
            if length == 126:
                if size - position < 4:
                    break
                length = int.from_bytes(buffer[position + 2 : position + 4], "big")
                header = 4
            elif length == 127:
                if size - position < 10:
                    break
                length = int.from_bytes(buffer[position + 2 : position + 10], "big")
                header = 10
            end = position + header + length
            if end > size:
                break
            opcode = buffer[position] & 0x0F
            if opcode == 1:
                frames += 1
                if frames >= next_sample:
                    next_sample += SAMPLE_EVERY
                    found = _T_FIELD.search(buffer, position + header, end)
                    if found is not None:
                        skews.append(time.time_ns() // 1_000_000 - int(found.group(1)))
            elif opcode == 9:
                sock.sendall(masked_frame(bytes(buffer[position + header : end]), opcode=10))
            position = end
        del buffer[:position]
    cpu = time.process_time() - cpu_start
    sock.close()
    counted = frames - max(counted_from, 0)
    skews.sort()
    return {
        "frames_per_second": counted / seconds,
        "client_cores": cpu / seconds,
        "skew_ms": _quantiles(skews),
    }


def _quantiles(values: list[int]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "p50": values[len(values) // 2],
        "p99": values[min(len(values) - 1, len(values) * 99 // 100)],
        "min": values[0],
        "max": values[-1],
    }


# -- the ceiling's sender (runs in its own process) -----------------------------------------------


def blast(port_file: Path, codes: int) -> None:
    """Accept one client, answer its handshake with a bare 101, then write ready-made frames forever."""
    market = Market("crypto", seed=1)
    now = time.time_ns() // 1_000_000
    payloads = [market.trade_frame(f"C{index % codes:04d}USDT", now) for index in range(4096)]
    block = b"".join(bytes([0x81, len(payload)]) + payload for payload in payloads if len(payload) < 126)
    listener = socket.create_server(("127.0.0.1", 0))
    port_file.write_text(str(listener.getsockname()[1]))
    client, _ = listener.accept()
    request = b""
    while b"\r\n\r\n" not in request:
        request += client.recv(65536)
    client.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    try:
        while True:
            client.sendall(block)
    except OSError:
        return


# -- the orchestrator --------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def simulator(tree: Path, rate: float) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """The simulator of ``tree`` (its own ``bridge`` package first on the path), and its port."""
    command = [
        sys.executable,
        "-m",
        "bridge.simulator",
        "--port=0",
        f"--api-key={KEY}",
        f"--rate={rate}",
        "--depth-rate=0",
        "--kline-rate=0",
        "--frame-limit=0",
        "--max-codes-per-connection=0",
        "--summary-every=0",
        "--seed=1",
    ]
    process = subprocess.Popen(command, cwd=tree, stderr=subprocess.PIPE)
    try:
        assert process.stderr is not None
        while (found := re.search(rb"listening on ws://[^:]+:(\d+)/ws", process.stderr.readline())) is None:
            if process.poll() is not None:
                raise RuntimeError(f"the simulator of {tree} exited with {process.returncode}")
        yield process, int(found.group(1))
    finally:
        process.terminate()
        process.wait(timeout=10)


def measure(server_pid: int, port: int, args: argparse.Namespace) -> dict[str, Any]:
    """Run the counting client against ``port``; the server's CPU is read over the client's window."""
    client = subprocess.Popen(
        [sys.executable, __file__, "client", str(port), str(args.codes), str(args.warmup), str(args.seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert client.stdout is not None
    if client.stdout.readline().strip() != "window":
        raise RuntimeError("the counting client failed before its window")
    before = cpu_seconds(server_pid)
    result: dict[str, Any] = json.loads(client.stdout.readline())
    result["server_cores"] = (cpu_seconds(server_pid) - before) / args.seconds
    client.wait(timeout=10)
    return result


def ceiling(args: argparse.Namespace) -> dict[str, Any]:
    """The counting client fed by the blaster."""
    with tempfile.TemporaryDirectory() as directory:
        port_file = Path(directory) / "port"
        sender = subprocess.Popen([sys.executable, __file__, "blast", str(port_file), str(args.codes)])
        try:
            while not port_file.exists() or not port_file.read_text():
                time.sleep(0.05)
            result = measure(sender.pid, int(port_file.read_text()), args)
            result["skew_ms"] = None  # the ready-made frames carry one old t: their age says nothing
            return result
        finally:
            sender.terminate()
            sender.wait(timeout=10)


@contextmanager
def baseline_tree(commit: str) -> Iterator[Path | None]:
    """The repository's ``bridge`` package at ``commit`` in a temporary directory, or ``None``."""
    if commit == "none":
        yield None
        return
    archive = subprocess.run(["git", "archive", commit, "bridge"], cwd=ROOT, capture_output=True, check=False)
    if archive.returncode != 0:
        print(f"no baseline: git archive {commit} failed: {archive.stderr.decode().strip()}")
        yield None
        return
    with tempfile.TemporaryDirectory() as directory:
        with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
            tar.extractall(directory, filter="data")
        yield Path(directory)


def _line(name: str, rate: float | None, result: dict[str, Any]) -> str:
    skew = result["skew_ms"] or {}
    offered = "flat out" if rate is None else f"{rate:,.0f}"
    return (
        f"| {name} | {offered} | {result['frames_per_second']:,.0f} | {result['server_cores']:.2f} | "
        f"{result['client_cores']:.2f} | {skew.get('p50', '-')} / {skew.get('p99', '-')} / {skew.get('max', '-')} |"
    )


def main() -> None:
    """Run the ceiling, then ours and the baseline at each offered rate; print a table and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--codes",
        type=int,
        default=500,
        help="crypto codes subscribed; keep rate / codes under 1000/s or t runs ahead of the clock "
        "(default: %(default)s)",
    )
    parser.add_argument("--rates", default="100000,200000,400000", help="offered trades/s (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured window (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=1.5, help="seconds before the window (default: %(default)s)")
    parser.add_argument(
        "--baseline", default=BASELINE, help="commit of the baseline simulator, or none (default: %(default)s)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    rates = [float(rate) for rate in args.rates.split(",")]
    print(f"{args.codes} codes, {args.seconds:g} s windows after {args.warmup:g} s; cores: {os.cpu_count()}")
    results: dict[str, Any] = {"ceiling": ceiling(args), "ours": {}, "baseline": {}}
    with baseline_tree(args.baseline) as old:
        for rate in rates:
            for name, tree in (("ours", ROOT), ("baseline", old)):
                if tree is None:
                    continue
                with simulator(tree, rate) as (process, port):
                    results[name][rate] = measure(process.pid, port, args)
    print("| run | offered/s | delivered/s | simulator cores | client cores | receipt - t ms p50 / p99 / max |")
    print("|---|---|---|---|---|---|")
    print(_line("ceiling (ready-made frames)", None, results["ceiling"]))
    for rate in rates:
        for name in ("ours", "baseline"):
            if rate in results[name]:
                print(_line(name, rate, results[name][rate]))
    client_ceiling = results["ceiling"]["frames_per_second"]
    for rate in rates:
        ours = results["ours"][rate]["frames_per_second"]
        parts = [f"offered {rate:,.0f}/s: ours delivered {ours / rate:.2f}x of offered"]
        if rate in results["baseline"]:
            parts.append(f"{ours / results['baseline'][rate]['frames_per_second']:.2f}x the baseline")
        parts.append(f"{ours / client_ceiling:.2f}x of the client's ceiling")
        print("; ".join(parts))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        port_text, codes_text, warmup_text, seconds_text = sys.argv[2:6]
        outcome = count_frames(int(port_text), int(codes_text), float(warmup_text), float(seconds_text))
        print(json.dumps(outcome), flush=True)
    elif len(sys.argv) > 1 and sys.argv[1] == "blast":
        blast(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
