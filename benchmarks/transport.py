"""Transport stacks side by side: connect, reconnect, RTT, throughput and daemon cost, in one run.

Prints one JSON object on stdout and nothing else (progress goes to stderr). Every stack in
``STACKS`` runs as two processes on loopback, one after the other in the same run, through the
uniform command line described in ``benchmarks/transport_stacks/__init__.py``:

1. The harness writes an identity file per side: random Ed25519 seeds, each side pinned to the
   other's public key, so every stack authenticates both ends and refuses other keys.
2. It starts ``python -m <module> server`` and waits (bounded) for ``READY`` on its stdout.
3. It measures the idle server: CPU time over a fixed window after a settle period, and RSS,
   read from ``/proc`` (Linux only).
4. It runs ``python -m <module> client`` to completion (bounded) and takes its JSON report.
5. It reads the server's RSS again (after load) and its peak RSS, then stops it: stdin closed,
   then SIGTERM, then SIGKILL, each after a bounded wait. Children are stopped on every exit
   path, errors and signals included.
6. It records ``background_cpu_cores``: the machine's busy CPU time during the stack's run minus
   what its client and server used, per second. On a shared 2-core machine anything above a
   few tenths means the stack competed for cores, and its report says so in ``notes``.

``ratios`` divides each stack's numbers by the baseline's (plain aioquic) from the same run;
``goals`` checks the targets of the transport issue for every non-baseline stack:
connect p50 at most 1.1x aioquic; reconnect p50 below iroh's fresh connect p50 (the smaller of
its new-endpoint and same-endpoint figures, to be strict); throughput at least 0.9x aioquic.

A stack whose Python package is missing is reported as ``{"skipped": reason}``; one that fails
as ``{"failed": reason, "stderr_tail": ...}``; neither stops the others.

``aioquic_floor`` is measured first, in the harness process: two bare aioquic ``QuicConnection``
objects handing datagrams to each other in memory (no sockets, no event loop, no processes),
resuming a session with 0-RTT (X25519 only, QUIC v1 only, as AuraLink configures them). It
times each step on the critical path of a resumed connect to first echo: the client's
ClientHello with the echo request in 0-RTT, the server's flight with the echo, and the client
reading the flight and the echo. Their sum is what pure-Python aioquic costs on this machine
before any adapter, socket or second process; any aioquic-based stack's ``reconnect_ms`` sits
above it. The server's handling of the client's Finished is off that path and reported apart.

Network isolation. iroh's Rust core starts a port mapper even with relays and discovery off, and
it multicasts a UPnP (SSDP) search to 239.255.255.250:1900 that the Python bindings cannot turn
off. So, by default (``--network auto``), the harness re-executes itself under
``unshare --net`` in a private network namespace that has only the loopback interface; every
child inherits it, and no stack can send a packet off the machine. That needs root, ``unshare``
and ``ip``; without them ``auto`` runs on the host network and says so in ``network``.
``--network isolated`` refuses to run unisolated; ``--network host`` never isolates.

Adding a stack is one line in ``STACKS`` plus a module in ``benchmarks/transport_stacks/``.

Usage::

    python benchmarks/transport.py                      # every installed stack, full sizes
    python benchmarks/transport.py --quick              # small counts, for smoke runs
    python benchmarks/transport.py --stacks aioquic,iroh --connects 20
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import os
import platform
import resource
import select
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aioquic import tls
from aioquic.quic import events as quic_events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicProtocolVersion
from aioquic.tls import SessionTicket
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

REPO_ROOT = Path(__file__).resolve().parent.parent
"""Children run from here so ``python -m benchmarks.transport_stacks.*`` resolves."""


@dataclass(frozen=True, slots=True)
class StackSpec:
    """How to run one stack."""

    module: str
    """The module run with ``python -m`` for both roles."""
    requires: tuple[str, ...]
    """Top-level modules that must be importable; the stack is skipped otherwise."""
    args: tuple[str, ...] = ()
    """Extra arguments passed to both roles."""


STACKS: dict[str, StackSpec] = {
    "aioquic": StackSpec("benchmarks.transport_stacks.aioquic_stack", ("aioquic",)),
    "auralink": StackSpec("benchmarks.transport_stacks.auralink_stack", ("auralink_node",)),
    "iroh": StackSpec("benchmarks.transport_stacks.iroh_stack", ("iroh",)),
    "libp2p": StackSpec("benchmarks.transport_stacks.libp2p_stack", ("libp2p", "trio"), ("--transport", "quic")),
    "libp2p-tcp": StackSpec("benchmarks.transport_stacks.libp2p_stack", ("libp2p", "trio"), ("--transport", "tcp")),
}
"""Every stack the harness knows, in run order: the baseline first, then ours, then the others."""

BASELINE = "aioquic"
"""The stack every ratio divides by."""

FLOOR_SAMPLES = 300
"""In-memory resumed handshakes timed for ``aioquic_floor``."""

STARTUP_TIMEOUT_S = 30.0
"""Longest wait for a server's READY line."""

STOP_TIMEOUT_S = 5.0
"""Longest wait after each stop step (stdin closed, SIGTERM) before the next one."""

BACKGROUND_WARNING_CORES = 0.2
"""Average CPU use by other processes above which a stack's report carries a warning."""

CONNECT_GOAL_RATIO = 1.1
"""Goal: connect p50 at most this multiple of the baseline's."""

THROUGHPUT_GOAL_RATIO = 0.9
"""Goal: throughput at least this fraction of the baseline's."""


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much work each client does."""

    connects: int
    """Fresh connections (and resumed ones) per stack."""
    rtt_count: int
    """Echo round trips per stack."""
    nbytes: int
    """Bytes per upload."""
    uploads: int
    """Uploads per stack (the median is reported)."""
    idle_settle_s: float
    """Wait after READY before measuring the idle server."""
    idle_window_s: float
    """Length of the idle CPU measurement."""

    def client_args(self) -> list[str]:
        """The client's size arguments."""
        return [
            "--connects",
            str(self.connects),
            "--rtt-count",
            str(self.rtt_count),
            "--bytes",
            str(self.nbytes),
            "--uploads",
            str(self.uploads),
        ]

    def client_timeout_s(self) -> float:
        """A generous bound on one client run (uploads at 0.5 MB/s, twice for iroh's patched rerun)."""
        upload_s = 30.0 + self.nbytes / 500_000
        return 120.0 + 2.0 * self.connects + 0.05 * self.rtt_count + 2 * self.uploads * upload_s


FULL = Sizes(connects=50, rtt_count=1000, nbytes=50_000_000, uploads=3, idle_settle_s=2.0, idle_window_s=5.0)
QUICK = Sizes(connects=10, rtt_count=200, nbytes=5_000_000, uploads=1, idle_settle_s=0.5, idle_window_s=2.0)


class StackFailed(Exception):
    """A stack's server or client did not produce a result."""

    def __init__(self, reason: str, stderr_tail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.stderr_tail = stderr_tail


# -- /proc readings -----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """CPU time of a whole process (all threads, live or exited), in seconds, at ns resolution.

    Reads the process's CPU-time clock, ``MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)`` in Linux's
    ``posix-timers.h``. The clock-tick counters in ``/proc/<pid>/stat`` (10 ms) are too coarse
    for an idle daemon, and ``/proc/<pid>/schedstat`` reads zero on kernels without schedstats.
    """
    return time.clock_gettime((~pid << 3) | 2)


def system_busy_seconds() -> float:
    """CPU time all cores spent not idle since boot (``/proc/stat``, first line)."""
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def waited_children_cpu_seconds() -> float:
    """CPU time of this process's children that have been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def memory_status(pid: int) -> dict[str, float]:
    """Current and peak RSS in MB (10**6 bytes) and the thread count, from ``/proc/<pid>/status``."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = round(int(rest.split()[0]) * 1024 / 1e6, 1)
        elif key == "Threads":
            values[key] = int(rest)
    return {"rss_mb": values["VmRSS"], "peak_rss_mb": values["VmHWM"], "threads": values["Threads"]}


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_gb = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        memory_gb = round(int(Path("/proc/meminfo").read_text().split()[1]) / 1024**2, 1)
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": memory_gb,
        "system": f"{platform.system()} {platform.release()}",
        "loadavg_at_start": [round(value, 2) for value in os.getloadavg()],
    }


# -- processes ----------------------------------------------------------------------------------


def child_environment() -> dict[str, str]:
    """The harness's environment with the repository root first on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def tail(path: Path, limit: int = 2000) -> str:
    """The end of a log file."""
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-limit:]
    return ""


def write_private_json(path: Path, data: dict[str, Any]) -> None:
    """A JSON file only the owner can read (it holds a secret seed)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(data, handle)


def write_identities(workdir: Path) -> tuple[Path, Path]:
    """Fresh server and client identity files, each pinned to the other's key."""
    server_seed, client_seed = os.urandom(32), os.urandom(32)

    def public(seed: bytes) -> str:
        key = Ed25519PrivateKey.from_private_bytes(seed).public_key()
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()

    server_path, client_path = workdir / "server-identity.json", workdir / "client-identity.json"
    write_private_json(server_path, {"secret_seed_hex": server_seed.hex(), "peer_public_key_hex": public(client_seed)})
    write_private_json(client_path, {"secret_seed_hex": client_seed.hex(), "peer_public_key_hex": public(server_seed)})
    return server_path, client_path


@contextlib.contextmanager
def server_process(spec: StackSpec, port_file: Path, identity: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A running server, READY; stopped on exit whatever happens."""
    command = [
        sys.executable,
        "-m",
        spec.module,
        "server",
        "--port-file",
        str(port_file),
        "--identity",
        str(identity),
        *spec.args,
    ]
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=child_environment(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    try:
        wait_ready(process, log)
        yield process
    finally:
        stop_process(process)


def wait_ready(process: subprocess.Popen[bytes], log: Path) -> None:
    """Block until the server prints READY, exits, or ``STARTUP_TIMEOUT_S`` passes."""
    assert process.stdout is not None
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while (remaining := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([process.stdout], [], [], remaining)
        if not readable:
            break
        line = process.stdout.readline()
        if not line:
            raise StackFailed(f"server exited with status {process.wait(STOP_TIMEOUT_S)} before READY", tail(log))
        if line.strip() == b"READY":
            return
    raise StackFailed(f"server not READY after {STARTUP_TIMEOUT_S:.0f} s", tail(log))


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Close stdin, then SIGTERM, then SIGKILL, waiting a bounded time after each."""
    if process.poll() is None and process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_TIMEOUT_S)
    if process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_TIMEOUT_S)
    if process.poll() is None:
        process.kill()
        process.wait(STOP_TIMEOUT_S)
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def measure_idle(pid: int, sizes: Sizes) -> dict[str, Any]:
    """CPU share (percent of one core) and memory of a server that has no peer."""
    time.sleep(sizes.idle_settle_s)
    start_cpu, start = cpu_seconds(pid), time.monotonic()
    time.sleep(sizes.idle_window_s)
    cpu, elapsed = cpu_seconds(pid) - start_cpu, time.monotonic() - start
    memory = memory_status(pid)
    return {
        "idle_cpu_percent": round(100 * cpu / elapsed, 3),
        "idle_window_s": round(elapsed, 2),
        "idle_rss_mb": memory["rss_mb"],
        "threads": memory["threads"],
    }


def run_client(spec: StackSpec, server_info: Path, identity: Path, sizes: Sizes, log: Path) -> dict[str, Any]:
    """Run the client to completion (bounded) and parse its one JSON object."""
    command = [
        sys.executable,
        "-m",
        spec.module,
        "client",
        "--server-info",
        str(server_info),
        "--identity",
        str(identity),
        *sizes.client_args(),
        *spec.args,
    ]
    timeout = sizes.client_timeout_s()
    with log.open("wb") as stderr:
        try:
            completed = subprocess.run(
                command,
                cwd=REPO_ROOT,
                env=child_environment(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:  # subprocess.run has killed the client
            raise StackFailed(f"client did not finish within {timeout:.0f} s", tail(log)) from exc
    if completed.returncode != 0:
        raise StackFailed(f"client exited with status {completed.returncode}", tail(log))
    try:
        report: dict[str, Any] = json.loads(completed.stdout)
    except json.JSONDecodeError as exc:
        raise StackFailed(f"client printed no JSON object: {exc}", tail(log)) from exc
    return report


def run_stack(name: str, spec: StackSpec, sizes: Sizes, workdir: Path) -> dict[str, Any]:
    """Everything about one stack, or why there is nothing."""
    missing = [module for module in spec.requires if importlib.util.find_spec(module) is None]
    if missing:
        return {"skipped": f"Python package(s) not installed: {', '.join(missing)} (install the 'bench' extra)"}
    stack_dir = workdir / name
    stack_dir.mkdir()
    server_identity, client_identity = write_identities(stack_dir)
    port_file = stack_dir / "server-info.json"
    started, busy, children = time.monotonic(), system_busy_seconds(), waited_children_cpu_seconds()
    try:
        with server_process(spec, port_file, server_identity, stack_dir / "server.log") as server:
            daemon = measure_idle(server.pid, sizes)
            report = run_client(spec, port_file, client_identity, sizes, stack_dir / "client.log")
            after = memory_status(server.pid)
            daemon["rss_mb_after_run"] = after["rss_mb"]
            daemon["peak_rss_mb"] = after["peak_rss_mb"]
            ours = cpu_seconds(server.pid) + waited_children_cpu_seconds() - children
            background = system_busy_seconds() - busy - ours
    except StackFailed as exc:
        return {"failed": exc.reason, "stderr_tail": exc.stderr_tail}
    wall = time.monotonic() - started
    report["daemon"] = daemon
    report["wall_s"] = round(wall, 1)
    report["background_cpu_cores"] = round(max(background, 0.0) / wall, 2)
    if report["background_cpu_cores"] > BACKGROUND_WARNING_CORES:
        report["notes"].append(
            f"other processes used {report['background_cpu_cores']} cores on average during this stack's run; "
            "client and server compete with them for the machine's cores, so the numbers are pessimistic"
        )
    return report


# -- comparisons --------------------------------------------------------------------------------


def p50(report: dict[str, Any], *path: str) -> float | None:
    """The p50 at ``path`` in a stack report, if measured."""
    node: Any = report
    for key in path:
        if not isinstance(node, dict) or node.get(key) is None:
            return None
        node = node[key]
    value = node.get("p50") if isinstance(node, dict) else None
    return float(value) if value is not None else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator`` rounded, or None when either is missing."""
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def compare(
    stacks: dict[str, dict[str, Any]], floor: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ratios against the baseline and the issue's goals, for every measured stack (and the aioquic floor)."""
    base = stacks.get(BASELINE, {})
    measured = {name: report for name, report in stacks.items() if "connect_ms" in report}
    ratios: dict[str, Any] = {}
    for name, report in measured.items():
        ratios[name] = {
            "throughput_vs_aioquic": ratio(report.get("throughput_mb_s"), base.get("throughput_mb_s")),
            "connect_p50_vs_aioquic": ratio(p50(report, "connect_ms"), p50(base, "connect_ms")),
            "connect_first_echo_p50_vs_aioquic": ratio(
                p50(report, "connect_first_echo_ms"), p50(base, "connect_first_echo_ms")
            ),
            "reconnect_p50_vs_aioquic": ratio(p50(report, "reconnect_ms"), p50(base, "reconnect_ms")),
            "rtt_p50_vs_aioquic": ratio(p50(report, "rtt_ms"), p50(base, "rtt_ms")),
        }
    iroh = stacks.get("iroh", {})
    iroh_fresh = [
        value
        for value in (p50(iroh, "connect_ms"), p50(iroh, "extra", "connect_same_endpoint_ms"))
        if value is not None
    ]
    iroh_reference = min(iroh_fresh) if iroh_fresh else None
    goals: dict[str, Any] = {
        "definition": {
            "connect": f"connect_ms p50 <= {CONNECT_GOAL_RATIO} x aioquic's",
            "reconnect": "reconnect_ms p50 (resumed, to first echo) < iroh's fresh connect_ms p50 "
            "(the smaller of its new-endpoint and same-endpoint p50)",
            "throughput": f"throughput_mb_s >= {THROUGHPUT_GOAL_RATIO} x aioquic's",
        },
        "iroh_fresh_connect_p50_ms": iroh_reference,
        "by_stack": {},
    }
    floor_p50 = p50(floor or {}, "critical_path_ms")
    if floor_p50 is not None:
        # Can any aioquic-based stack meet the reconnect goal? Not if aioquic's own work exceeds it.
        goals["aioquic_resumed_0rtt_floor_p50_ms"] = floor_p50
        goals["aioquic_floor_below_iroh_fresh_connect"] = None if iroh_reference is None else floor_p50 < iroh_reference
    for name, report in measured.items():
        if name == BASELINE:
            continue
        connect_ratio = ratios[name]["connect_p50_vs_aioquic"]
        throughput_ratio = ratios[name]["throughput_vs_aioquic"]
        reconnect = p50(report, "reconnect_ms")
        goals["by_stack"][name] = {
            "connect": None if connect_ratio is None else connect_ratio <= CONNECT_GOAL_RATIO,
            "reconnect": None if reconnect is None or iroh_reference is None else reconnect < iroh_reference,
            "throughput": None if throughput_ratio is None else throughput_ratio >= THROUGHPUT_GOAL_RATIO,
        }
    return ratios, goals


# -- the pure-Python aioquic floor ------------------------------------------------------------------


def _self_signed(key: Ed25519PrivateKey) -> x509.Certificate:
    """A throwaway self-signed Ed25519 certificate (names and dates carry no meaning here)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "floor")])
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=30))
        .sign(key, None)
    )


class _InMemoryPair:
    """Makes client/server aioquic connection pairs configured as AuraLink's (X25519, QUIC v1), and keeps tickets."""

    CLIENT = ("10.0.0.1", 1234)
    SERVER = ("10.0.0.2", 4433)

    def __init__(self) -> None:
        self.server_key = Ed25519PrivateKey.generate()
        self.certificate = _self_signed(self.server_key)
        self.server_tickets: dict[bytes, SessionTicket] = {}
        self.client_tickets: list[SessionTicket] = []

    def make(self, *, resume: bool) -> tuple[QuicConnection, QuicConnection]:
        """A fresh client and server; the client offers the last ticket if ``resume``."""
        client_config = QuicConfiguration(
            is_client=True, alpn_protocols=["floor"], verify_mode=ssl.CERT_NONE, server_name="floor"
        )
        client_config.supported_versions = [QuicProtocolVersion.VERSION_1]
        if resume:
            client_config.session_ticket = self.client_tickets[-1]
        client = QuicConnection(configuration=client_config, session_ticket_handler=self.client_tickets.append)
        server_config = QuicConfiguration(
            is_client=False, alpn_protocols=["floor"], certificate=self.certificate, private_key=self.server_key
        )
        server_config.supported_versions = [QuicProtocolVersion.VERSION_1]
        server = QuicConnection(
            configuration=server_config,
            original_destination_connection_id=client.original_destination_connection_id,
            session_ticket_fetcher=self.server_tickets.get,
            session_ticket_handler=lambda ticket: self.server_tickets.__setitem__(ticket.ticket, ticket),
        )
        for connection in (client, server):
            _x25519_only(connection)
        return client, server

    def earn_ticket(self) -> None:
        """A full handshake, run until the client holds a session ticket."""
        client, server = self.make(resume=False)
        now = 0.0
        client.connect(self.SERVER, now)
        for _ in range(8):  # bounded: the ticket follows the handshake, once time has moved on
            _deliver(client.datagrams_to_send(now), server, self.CLIENT, now)
            _deliver(server.datagrams_to_send(now), client, self.SERVER, now)
            now += 0.05
        if not self.client_tickets:
            raise RuntimeError("aioquic issued no session ticket")


def _x25519_only(connection: QuicConnection) -> None:
    """Offer and accept X25519 alone, as ``auralink_node.transport.quic`` does."""
    initialize = connection._initialize

    def patched(peer_cid: bytes) -> None:
        initialize(peer_cid)
        connection.tls._supported_groups = [tls.Group.X25519]

    connection._initialize = patched  # type: ignore[method-assign]


def _deliver(datagrams: Iterable[tuple[bytes, Any]], receiver: QuicConnection, source: Any, now: float) -> None:
    for data, _ in datagrams:
        receiver.receive_datagram(data, source, now)


def _serve_echo(server: QuicConnection) -> None:
    while (event := server.next_event()) is not None:
        if isinstance(event, quic_events.StreamDataReceived):
            server.send_stream_data(event.stream_id, event.data)


def _resumed_steps(pairs: _InMemoryPair, message: bytes) -> tuple[float, float, float, float]:
    """Milliseconds of each step of one resumed 0-RTT echo (see ``aioquic_floor``)."""
    now = 0.0
    t0 = time.perf_counter_ns()
    client, server = pairs.make(resume=True)
    client.connect(pairs.SERVER, now)
    client.send_stream_data(client.get_next_available_stream_id(), message)
    first_flight = list(client.datagrams_to_send(now))
    t1 = time.perf_counter_ns()
    _deliver(first_flight, server, pairs.CLIENT, now)
    _serve_echo(server)
    answer = list(server.datagrams_to_send(now))
    t2 = time.perf_counter_ns()
    _deliver(answer, client, pairs.SERVER, now)
    echoed = b""
    while (event := client.next_event()) is not None:
        if isinstance(event, quic_events.StreamDataReceived):
            echoed += event.data
    finished = list(client.datagrams_to_send(now))
    t3 = time.perf_counter_ns()
    _deliver(finished, server, pairs.CLIENT, now)
    _serve_echo(server)
    t4 = time.perf_counter_ns()
    if echoed != message or not (client.tls.session_resumed and client.tls.early_data_accepted):
        raise RuntimeError("the in-memory resumed 0-RTT echo did not complete within one round trip")
    return (t1 - t0) / 1e6, (t2 - t1) / 1e6, (t3 - t2) / 1e6, (t4 - t3) / 1e6


def aioquic_floor(samples: int) -> dict[str, Any]:
    """Resumed 0-RTT connect to first echo between two in-memory aioquic connections, step by step."""
    pairs = _InMemoryPair()
    pairs.earn_ticket()
    message = bytes(64)
    for _ in range(20):  # warm-up
        _resumed_steps(pairs, message)
    rows = [_resumed_steps(pairs, message) for _ in range(samples)]

    def summary(values: list[float]) -> dict[str, float]:
        return {"p50": round(statistics.median(values), 3), "min": round(min(values), 3)}

    return {
        "what": "two aioquic QuicConnections in one process, datagrams handed over in memory: resumed session, "
        "echo request in 0-RTT, X25519 and QUIC v1 only; no sockets, event loop or second process",
        "samples": samples,
        "client_hello_with_0rtt_ms": summary([row[0] for row in rows]),
        "server_flight_with_echo_ms": summary([row[1] for row in rows]),
        "client_reads_flight_and_echo_ms": summary([row[2] for row in rows]),
        "critical_path_ms": summary([row[0] + row[1] + row[2] for row in rows]),
        "server_reads_client_finished_ms_off_path": summary([row[3] for row in rows]),
        "loadavg": [round(value, 2) for value in os.getloadavg()],
    }


# -- network isolation --------------------------------------------------------------------------

ISOLATION_MARKER = "AURALINK_BENCH_NETNS"
"""Set in the environment of a harness that runs inside its private network namespace."""


def isolation_unavailable() -> str | None:
    """Why this process cannot make a private network namespace, or None if it can."""
    if os.geteuid() != 0:
        return "not root"
    missing = [tool for tool in ("unshare", "ip") if shutil.which(tool) is None]
    if missing:
        return f"missing {' and '.join(missing)}"
    return None


def isolate_network(mode: str, argv: list[str]) -> str:
    """Make sure the run happens where ``mode`` wants it; returns how the network is set up.

    Outside a namespace, with isolation wanted and possible, this replaces the process with
    ``unshare --net -- python transport.py ARGV`` and does not return.
    """
    if os.environ.get(ISOLATION_MARKER) == "1":
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=STOP_TIMEOUT_S)
        return "isolated: private network namespace with only loopback (unshare --net)"
    if mode == "host":
        return "host: not isolated (--network host)"
    reason = isolation_unavailable()
    if reason is not None:
        if mode == "isolated":
            raise SystemExit(f"--network isolated: cannot make a network namespace ({reason})")
        return f"host: not isolated ({reason}); iroh's port mapper may multicast an SSDP search"
    os.environ[ISOLATION_MARKER] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp("unshare", ["unshare", "--net", "--", sys.executable, str(Path(__file__).resolve()), *argv])
    raise AssertionError("unreachable")


# -- command line -------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> tuple[list[str], Sizes, Path | None, str, bool]:
    """Stacks to run, work sizes, where to keep logs, the network mode, and whether to measure the floor."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--stacks", default=",".join(STACKS), help=f"comma-separated, from: {', '.join(STACKS)} (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="small counts, for smoke runs")
    parser.add_argument("--connects", type=int)
    parser.add_argument("--rtt-count", type=int)
    parser.add_argument("--bytes", type=int)
    parser.add_argument("--uploads", type=int)
    parser.add_argument("--idle-seconds", type=float, help="idle CPU measurement window")
    parser.add_argument("--log-dir", type=Path, help="keep identity files and child logs here")
    parser.add_argument("--no-floor", action="store_true", help="skip the in-memory aioquic floor measurement")
    parser.add_argument(
        "--network",
        choices=("auto", "isolated", "host"),
        default="auto",
        help="run in a private network namespace with only loopback (default: when possible)",
    )
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.stacks.split(",") if name.strip()]
    unknown = [name for name in names if name not in STACKS]
    if unknown:
        parser.error(f"unknown stack(s) {', '.join(unknown)}; known: {', '.join(STACKS)}")
    sizes = QUICK if args.quick else FULL
    overrides = {
        "connects": args.connects,
        "rtt_count": args.rtt_count,
        "nbytes": args.bytes,
        "uploads": args.uploads,
        "idle_window_s": args.idle_seconds,
    }
    sizes = Sizes(**{**asdict(sizes), **{key: value for key, value in overrides.items() if value is not None}})
    if min(sizes.connects, sizes.rtt_count, sizes.nbytes, sizes.uploads) < 1 or sizes.idle_window_s <= 0:
        parser.error("counts, bytes and the idle window must be positive")
    return names, sizes, args.log_dir, args.network, not args.no_floor


def raise_system_exit(signum: int, _frame: Any) -> None:
    """Turn SIGTERM into SystemExit so that every ``finally`` stops its children."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    """Run the chosen stacks one after the other and print the JSON report."""
    argv = sys.argv[1:] if argv is None else argv
    names, sizes, log_dir, network_mode, floor = parse_args(argv)
    network = isolate_network(network_mode, argv)
    signal.signal(signal.SIGTERM, raise_system_exit)
    result: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "machine": machine_info(),
        "same_run": True,
        "network": network,
        "sizes": asdict(sizes),
        "baseline": BASELINE,
        "stacks": {},
    }
    if floor:
        print("transport benchmark: in-memory aioquic floor ...", file=sys.stderr, flush=True)
        result["aioquic_floor"] = aioquic_floor(FLOOR_SAMPLES)
    with contextlib.ExitStack() as cleanup:
        if log_dir is None:
            workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="transport-bench-")))
        else:
            log_dir.mkdir(parents=True, exist_ok=True)
            workdir = Path(tempfile.mkdtemp(prefix="run-", dir=log_dir))
        for name in names:
            print(f"transport benchmark: {name} ...", file=sys.stderr, flush=True)
            result["stacks"][name] = run_stack(name, STACKS[name], sizes, workdir)
            outcome = result["stacks"][name]
            status = outcome.get("skipped") or outcome.get("failed") or f"done in {outcome['wall_s']} s"
            print(f"transport benchmark: {name}: {status}", file=sys.stderr, flush=True)
    result["machine"]["loadavg_at_end"] = [round(value, 2) for value in os.getloadavg()]
    result["ratios"], result["goals"] = compare(result["stacks"], result.get("aioquic_floor"))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
