"""What every stack module shares: the command line, identities, the wire constants and the report.

A stack module supplies two entry points, ``serve(ServerOptions)`` and
``run_client(ClientOptions) -> ClientReport``, and calls ``run_stack_cli`` from its ``main()``.
This module owns everything else that must be identical across stacks, so that the numbers in
one run can be compared: how identities are derived (Ed25519 from a 32-byte seed), how the
server signals readiness (port file written atomically, then ``READY`` on stdout), how it stops
(stdin closed, SIGTERM or SIGINT), the echo and sink services' constants, how samples are
summarised, and the shape of the JSON report.

It imports only the standard library and ``cryptography`` (an aioquic dependency), never a
stack's own package, so the harness can always load it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import signal
import stat
import statistics
import struct
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = [
    "AUTH_CHECK_SKIPPED",
    "CLOSE_TIMEOUT_S",
    "CONNECT_TIMEOUT_S",
    "ECHO_MESSAGE_SIZE",
    "ECHO_TAG",
    "ECHO_TIMEOUT_S",
    "LOOPBACK",
    "MB",
    "READY_LINE",
    "SINK_REPLY_SIZE",
    "SINK_TAG",
    "STOP_SIGNALS",
    "ClientOptions",
    "ClientReport",
    "Identity",
    "Payload",
    "ServerInfo",
    "ServerOptions",
    "UploadOutcome",
    "decode_sink_reply",
    "ed25519_public_key",
    "encode_sink_reply",
    "install_stop_triggers",
    "package_versions",
    "run_stack_cli",
    "summarize",
    "summarize_uploads",
    "upload_timeout_s",
]

LOOPBACK = "127.0.0.1"
"""Every server binds here, port 0; no stack may reach any other address."""

ECHO_MESSAGE_SIZE = 64
"""Bytes in one echo message."""

ECHO_TAG = b"E"
"""First byte of an echo stream on stacks that tag streams."""

SINK_TAG = b"S"
"""First byte of a sink stream on stacks that tag streams."""

SINK_REPLY_SIZE = 8 + 32
"""The sink's confirmation: received byte count (u64, big-endian) then SHA-256 of the bytes."""

MB = 1_000_000
"""Throughput unit: MB/s means 10**6 bytes per second."""

READY_LINE = "READY"
"""What a server prints on stdout once its port file is in place."""

CONNECT_TIMEOUT_S = 10.0
"""Upper bound on one dial, handshake included."""

ECHO_TIMEOUT_S = 5.0
"""Upper bound on one echo round trip (and on opening its stream)."""

CLOSE_TIMEOUT_S = 5.0
"""Upper bound on closing one connection or endpoint."""

PAYLOAD_BLOCK = 1 << 20
"""The upload payload repeats one random block of this size."""


# -- identities ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identity:
    """An Ed25519 identity and the peer key it expects."""

    seed: bytes
    """The 32-byte Ed25519 secret seed (RFC 8032 section 5.1.5)."""
    public_key: bytes
    """The 32-byte raw Ed25519 public key derived from ``seed``."""
    peer_public_key: bytes | None
    """The only peer key this side accepts, or None to accept any authenticated peer."""

    @classmethod
    def from_seed(cls, seed: bytes, peer_public_key: bytes | None = None) -> Identity:
        """Derive the public key from ``seed``."""
        return cls(seed=seed, public_key=ed25519_public_key(seed), peer_public_key=peer_public_key)

    @classmethod
    def load(cls, path: Path | None) -> Identity:
        """Read an identity file, or make a random identity that accepts any peer."""
        if path is None:
            return cls.from_seed(os.urandom(32))
        data = json.loads(path.read_text())
        peer = data.get("peer_public_key_hex")
        return cls.from_seed(bytes.fromhex(data["secret_seed_hex"]), bytes.fromhex(peer) if peer else None)

    def private_key(self) -> Ed25519PrivateKey:
        """The seed as a ``cryptography`` private key."""
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    def accepts(self, peer_key: bytes | None) -> bool:
        """Whether a peer proven to hold ``peer_key`` may talk to this side."""
        if peer_key is None:
            return False
        return self.peer_public_key is None or peer_key == self.peer_public_key


def ed25519_public_key(seed: bytes) -> bytes:
    """The raw public key of an Ed25519 seed."""
    return (
        Ed25519PrivateKey.from_private_bytes(seed)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


# -- server info --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What a server writes to its port file."""

    stack: str
    """The stack module's name."""
    host: str
    """The bound IP address (always ``LOOPBACK``)."""
    port: int
    """The bound UDP or TCP port."""
    public_key_hex: str
    """The server's raw Ed25519 public key, hex."""
    pid: int
    """The server's process id."""
    address: dict[str, Any] = field(default_factory=dict)
    """Stack-specific dial information (a multiaddr, an endpoint id, ...)."""

    def write(self, path: Path) -> None:
        """Write atomically: readers never see a partial file."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path) -> ServerInfo:
        """Parse a port file."""
        return cls(**json.loads(path.read_text()))

    def announce(self, path: Path) -> None:
        """Write the port file, then tell the parent the server is ready."""
        self.write(path)
        print(READY_LINE, flush=True)


# -- options and the command line ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """Parsed ``server`` command line."""

    port_file: Path
    """Where to write the ``ServerInfo``."""
    identity: Identity
    """This server's key and the client key it accepts."""
    extra: dict[str, Any]
    """Stack-specific options."""


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Parsed ``client`` command line."""

    server: ServerInfo
    """The server to measure."""
    identity: Identity
    """This client's key and the server key it accepts."""
    connects: int
    """Fresh connections for ``connect_ms`` (and resumed ones for ``reconnect_ms``)."""
    rtt_count: int
    """Echo round trips for ``rtt_ms``."""
    nbytes: int
    """Bytes per upload."""
    uploads: int
    """Uploads of ``nbytes`` each."""
    auth_check: bool
    """Also check that a client with a wrong key is refused (only with an identity file, which
    tells that the server was given this client's key)."""
    extra: dict[str, Any]
    """Stack-specific options."""

    def server_key(self) -> bytes:
        """The server key to pin: from the identity file, else from the port file."""
        announced = bytes.fromhex(self.server.public_key_hex)
        if self.identity.peer_public_key is not None and self.identity.peer_public_key != announced:
            raise SystemExit("server-info public key differs from the identity file's peer key")
        return announced


def run_stack_cli(
    stack: str,
    serve: Callable[[ServerOptions], None],
    run_client: Callable[[ClientOptions], ClientReport],
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    argv: Sequence[str] | None = None,
) -> None:
    """Parse the uniform command line and run one side of ``stack``."""
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.transport_stacks.{stack}")
    sub = parser.add_subparsers(dest="role", required=True)
    server = sub.add_parser("server", help="serve echo and sink until stdin closes")
    server.add_argument("--port-file", type=Path, required=True)
    server.add_argument("--identity", type=Path, default=None)
    client = sub.add_parser("client", help="measure a running server; print one JSON object")
    client.add_argument("--server-info", type=Path, required=True)
    client.add_argument("--identity", type=Path, default=None)
    client.add_argument("--connects", type=int, default=50)
    client.add_argument("--rtt-count", type=int, default=1000)
    client.add_argument("--bytes", type=int, default=50 * MB)
    client.add_argument("--uploads", type=int, default=3)
    client.add_argument("--no-auth-check", action="store_true")
    for sub_parser in (server, client):
        if add_arguments is not None:
            add_arguments(sub_parser)
    args = parser.parse_args(argv)
    known = {
        "role",
        "port_file",
        "server_info",
        "identity",
        "connects",
        "rtt_count",
        "bytes",
        "uploads",
        "no_auth_check",
    }
    extra = {key: value for key, value in vars(args).items() if key not in known}
    identity = Identity.load(args.identity)
    if args.role == "server":
        serve(ServerOptions(port_file=args.port_file, identity=identity, extra=extra))
        return
    for name in ("connects", "rtt_count", "bytes", "uploads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    options = ClientOptions(
        server=ServerInfo.read(args.server_info),
        identity=identity,
        connects=args.connects,
        rtt_count=args.rtt_count,
        nbytes=args.bytes,
        uploads=args.uploads,
        auth_check=not args.no_auth_check and identity.peer_public_key is not None,
        extra=extra,
    )
    report = run_client(options)
    print(json.dumps(report.to_json()), flush=True)


def install_stop_triggers(on_stop: Callable[[], object]) -> None:
    """Call ``on_stop`` (from another thread) once stdin, if it is a pipe, reaches end of file.

    The harness holds the server's stdin pipe open for as long as it wants the server; closing
    it, or the harness dying, stops the server. When stdin is not a pipe (a terminal,
    ``/dev/null``) only signals stop the server. ``on_stop`` must be thread-safe (for example
    ``loop.call_soon_threadsafe``). SIGTERM and SIGINT are left to the caller's event loop.
    """
    try:
        if not stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode):
            return
    except (OSError, ValueError):
        return

    def wait_for_eof() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            on_stop()

    threading.Thread(target=wait_for_eof, name="stdin-eof", daemon=True).start()


AUTH_CHECK_SKIPPED = "no identity file, so the server may accept any client key; or --no-auth-check"
"""Why a client did not run the wrong-key check."""

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""Signals that stop a server cleanly."""


# -- services -----------------------------------------------------------------------------------


def encode_sink_reply(count: int, digest: bytes) -> bytes:
    """The sink's confirmation message."""
    return struct.pack(">Q", count) + digest


def decode_sink_reply(reply: bytes) -> tuple[int, bytes]:
    """Split a confirmation into (byte count, SHA-256)."""
    if len(reply) != SINK_REPLY_SIZE:
        raise ValueError(f"sink reply has {len(reply)} bytes, expected {SINK_REPLY_SIZE}")
    return struct.unpack(">Q", reply[:8])[0], reply[8:]


class Payload:
    """``nbytes`` of upload data: one random block repeated, with its SHA-256 computed up front."""

    def __init__(self, nbytes: int) -> None:
        block = os.urandom(min(PAYLOAD_BLOCK, nbytes))
        repeats, rest = divmod(nbytes, len(block))
        self.data = block * repeats + block[:rest]
        self.sha256 = hashlib.sha256(self.data).digest()

    def __len__(self) -> int:
        return len(self.data)

    def chunks(self, size: int) -> list[memoryview]:
        """The payload cut into views of ``size`` bytes (the last may be shorter)."""
        view = memoryview(self.data)
        return [view[offset : offset + size] for offset in range(0, len(view), size)]

    def check(self, reply: bytes) -> str | None:
        """None if the sink's confirmation matches this payload, else what went wrong."""
        try:
            count, digest = decode_sink_reply(reply)
        except ValueError as exc:
            return str(exc)
        if count != len(self.data):
            return f"server received {count} of {len(self.data)} bytes"
        if digest != self.sha256:
            return "server received corrupted data (SHA-256 mismatch)"
        return None


def upload_timeout_s(nbytes: int) -> float:
    """Give up on an upload slower than 0.5 MB/s (plus a fixed allowance)."""
    return 30.0 + nbytes / (0.5 * MB)


@dataclass(frozen=True, slots=True)
class UploadOutcome:
    """One upload through the sink service."""

    seconds: float
    """From the first write to the confirmation (or to the failure)."""
    error: str | None
    """None on success, else why the upload failed."""


# -- reporting ----------------------------------------------------------------------------------


def percentile(sorted_samples: Sequence[float], fraction: float) -> float:
    """Linear-interpolated percentile of sorted samples (NumPy's default method)."""
    position = (len(sorted_samples) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(sorted_samples) - 1)
    return sorted_samples[low] + (sorted_samples[high] - sorted_samples[low]) * (position - low)


def summarize(samples: Sequence[float], digits: int = 3) -> dict[str, float] | None:
    """p50/p99/mean/min/max/n of raw samples, or None when there are none."""
    if not samples:
        return None
    ordered = sorted(samples)
    return {
        "p50": round(percentile(ordered, 0.50), digits),
        "p99": round(percentile(ordered, 0.99), digits),
        "mean": round(statistics.fmean(ordered), digits),
        "min": round(ordered[0], digits),
        "max": round(ordered[-1], digits),
        "n": len(ordered),
    }


def summarize_uploads(outcomes: Sequence[UploadOutcome], nbytes: int) -> tuple[float | None, dict[str, Any]]:
    """The median throughput of the successful uploads, and the details."""
    rates = [nbytes / MB / outcome.seconds for outcome in outcomes if outcome.error is None]
    errors = [outcome.error for outcome in outcomes if outcome.error is not None]
    median = round(statistics.median(rates), 2) if rates else None
    return median, {
        "bytes": nbytes,
        "uploads": len(outcomes),
        "failed": len(errors),
        "runs_mb_s": [round(rate, 2) for rate in rates],
        "errors": errors,
    }


def package_versions(*distributions: str) -> dict[str, str]:
    """Installed versions of the named distributions (``"missing"`` when absent)."""
    found: dict[str, str] = {}
    for name in distributions:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


@dataclass(slots=True)
class ClientReport:
    """What one client run prints; filled in as the measurements complete."""

    stack: str
    """The stack module's name."""
    transport: str
    """A human description: protocol, security, identity check."""
    versions: dict[str, str]
    """Versions of the packages the stack runs on."""
    connect_ms: dict[str, float] | None = None
    """Fresh connect until identity verified and usable."""
    connect_first_echo_ms: dict[str, float] | None = None
    """Fresh connect until the first echo returned."""
    reconnect_ms: dict[str, float] | None = None
    """Resumed connect until the first echo returned; None if the stack cannot resume."""
    reconnect: dict[str, Any] | None = None
    """How reconnects were made and what the TLS layer reported."""
    rtt_ms: dict[str, float] | None = None
    """64-byte echo round trips."""
    throughput_mb_s: float | None = None
    """Median upload throughput through the sink."""
    throughput: dict[str, Any] = field(default_factory=dict)
    """Per-upload details."""
    auth: dict[str, Any] = field(default_factory=dict)
    """Whether a client with a wrong key was refused."""
    notes: list[str] = field(default_factory=list)
    """Caveats a reader must know to interpret the numbers."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Stack-specific measurements."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)
