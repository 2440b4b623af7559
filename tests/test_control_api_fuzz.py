"""Control-API fuzz: Schemathesis against a real daemon's OpenAPI document, then the daemon must be fine.

Theory of operation
-------------------
Schemathesis speaks HTTP over TCP only, and the control API listens on ``<home>/node.sock``. The test bridges
the two with :class:`_UnixSocketBridge`, a TCP server on ``127.0.0.1:0`` that copies the bytes of each TCP
connection to and from a new connection on the unix socket (a thread per direction; each side's EOF is passed
on as a half-close). The bridge does not look at HTTP, so Schemathesis sees exactly what a socket client sees.

``schemathesis run`` runs in its own process (its CLI is the tool's public, stable interface) against
``http://127.0.0.1:PORT/openapi.json``: every phase (coverage, fuzzing, stateful; the schema has no examples),
seeded, one worker, no example database, so every run sends the same requests (bar the node's own AuraID,
which the stateful phase copies from responses). Schemathesis leaves out ``GET /openapi.json``, the document
it loaded. Every check runs, tuned as :data:`CONFIG` says: no 5xx; status codes, content types, headers and
bodies as the schema declares them; invalid input rejected; ``405`` with ``Allow`` for undeclared methods.

Safety: the daemon must never send a packet off loopback. ``/v1/join`` sends DHT pings to the addresses it
is given, so the hook turns every valid one into the loopback discard port. The daemon dials only for
``/v1/connect``, ``/v1/ping`` and ``/v1/streams``, and only for a valid AuraID (56 z-base-32 characters with
a 24-bit checksum). Random
strings are not valid, but the stateful phase copies the node's own AuraID out of ``/v1/records`` into
``/v1/connect`` bodies, next to generated addresses. The node refuses to dial itself, and we do not rely on
that alone: :func:`drop_addresses_next_to_a_valid_aura_id`, a Schemathesis hook, empties the addresses of
any request whose AuraID is valid, so the node could only dial addresses it knows for that peer, and a fresh
node knows none. Without ``Upgrade`` the stream endpoints answer 426 before their handler runs, so the fuzz
never opens or serves a stream. Afterwards the test checks that the node knows no peer (a failed dial is
recorded as one) and has no connection.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from auralink.errors import AuralinkError
from auralink.identity import AuraID
from auralink.wire import Address
from tests.daemons import Daemon, cli_json

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]

SEED = 20_240_601
"""Seed of every Schemathesis run: the same requests each time."""
MAX_EXAMPLES = 100
"""Test cases per operation and phase: about 1,400 requests, in about 15 s."""
MIN_CASES = 1_000
"""Fewer cases than this means the run lost operations or phases."""

CONFIG = """\
hooks = "{hooks}"

[checks]
# The schema cannot say which strings are AuraIDs (56 z-base-32 characters with a 24-bit checksum), and the
# upgrade operations answer 426 without an `Upgrade` header: most schema-valid requests are rightly refused.
positive_data_acceptance.enabled = false
# A request without `Upgrade` is refused 426 before its query is looked at, whatever else is wrong with it.
negative_data_rejection.expected-statuses = [400, 404, 405, 409, 422, 426]
"""
"""``schemathesis.toml`` for the run; ``{hooks}`` is the path of the file that loads our hook."""

HOOKS = """\
import schemathesis

from tests.test_control_api_fuzz import drop_addresses_next_to_a_valid_aura_id

schemathesis.hook("before_call")(drop_addresses_next_to_a_valid_aura_id)
"""
"""The hooks file Schemathesis loads (in its own process)."""


def _is_aura_id(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        AuraID.parse(value)
    except AuralinkError:
        return False
    return True


def _is_address(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        Address.parse(value)
    except AuralinkError:
        return False
    return True


DISCARD = "127.0.0.1:9"
"""Where fuzzed ``/v1/join`` requests go instead: the discard port on loopback, where nothing answers."""


def drop_addresses_next_to_a_valid_aura_id(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Schemathesis ``before_call`` hook: a request that names a valid AuraID carries no address to dial,
    and every valid address a ``/v1/join`` request names becomes :data:`DISCARD`."""
    if isinstance(case.body, dict) and (_is_aura_id(case.body.get("aura_id")) or _is_aura_id(case.body.get("target"))):
        case.body["addresses"] = []  # /v1/connect, /v1/ping
    if isinstance(case.body, dict) and isinstance(case.body.get("addresses"), list):  # /v1/join
        case.body["addresses"] = [DISCARD if _is_address(a) else a for a in case.body["addresses"]]
    if isinstance(case.query, dict) and _is_aura_id(case.query.get("peer")):
        case.query.pop("addr", None)  # /v1/streams


def _copy(source: socket.socket, sink: socket.socket) -> None:
    """Copy until ``source`` ends, then end ``sink``'s sending side, so the far end sees the EOF too."""
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


class _Bridged(socketserver.BaseRequestHandler):
    """One TCP connection, joined to a new connection on the unix socket."""

    server: _UnixSocketBridge

    def handle(self) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as upstream:
            upstream.connect(str(self.server.socket_path))
            answers = threading.Thread(target=_copy, args=(upstream, self.request), daemon=True)
            answers.start()
            _copy(self.request, upstream)
            answers.join()


class _UnixSocketBridge(socketserver.ThreadingTCPServer):
    """Serves ``127.0.0.1:0`` by forwarding each connection to the unix socket ``socket_path``."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        super().__init__(("127.0.0.1", 0), _Bridged)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    node = Daemon(tmp_path / "node")
    try:
        yield node
    finally:
        node.kill()


@pytest.fixture
def bridge(daemon: Daemon) -> Iterator[_UnixSocketBridge]:
    with _UnixSocketBridge(daemon.home / "node.sock") as server:
        thread = threading.Thread(target=server.serve_forever, name="unix-socket-bridge", daemon=True)
        thread.start()
        try:
            yield server
        finally:
            server.shutdown()
            thread.join()


def _schemathesis(base_url: str, workdir: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run ``schemathesis run`` against ``base_url``; its output and its JSON report."""
    hooks = workdir / "hooks.py"
    hooks.write_text(HOOKS)
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG.format(hooks=hooks))
    report = workdir / "schemathesis-report.json"
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{base_url}/openapi.json",
        "--seed",
        str(SEED),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--suppress-health-check",
        "too_slow",
        "--request-timeout",
        "10",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path}  # the hooks file imports this module
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert report.exists(), f"schemathesis wrote no report (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done, json.loads(report.read_text())


def test_fuzzed_control_api_answers_by_its_schema_and_the_daemon_survives(
    tmp_path: Path, daemon: Daemon, bridge: _UnixSocketBridge
) -> None:
    before = cli_json(daemon.home, "status")
    schema = json.loads(_get(daemon, "/openapi.json"))
    expected_operations = sum(len(methods) for methods in schema["paths"].values()) - 1  # all but the schema itself
    workdir = tmp_path / "schemathesis"
    workdir.mkdir()

    done, report = _schemathesis(bridge.url, workdir)

    output = f"{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, output
    assert report["complete"] is True and report["stop_reason"] == "completed", output
    assert report["failures"] == [] and report["errors"] == [], output
    operations = report["operations"]
    assert operations["tested"] == operations["total"] == expected_operations, operations
    assert report["phases"] == {
        "examples": {"status": "skip", "skip_reason": None},  # the schema has no examples
        "coverage": {"status": "success", "skip_reason": None},
        "fuzzing": {"status": "success", "skip_reason": None},
        "stateful": {"status": "success", "skip_reason": None},
    }
    cases = report["test_cases"]
    assert cases["generated"] >= MIN_CASES and cases["with_failures"] == cases["errored"] == 0, cases

    # The daemon survived, still answers the CLI, and dialled nobody.
    assert daemon.proc.poll() is None
    after = cli_json(daemon.home, "status")
    assert after["aura_id"] == daemon.aura_id == before["aura_id"]
    assert after["listen"] == [daemon.address]
    assert after["peers"] == 0
    assert after["protocols"] == before["protocols"]  # nothing was left registered through /v1/serve
    assert cli_json(daemon.home, "peers") == {"peers": []}
    log = (tmp_path / "node.log").read_text()
    assert "Traceback" not in log, log


def _get(daemon: Daemon, path: str) -> bytes:
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.home / "node.sock")), base_url="http://node") as c:
        return c.get(path).raise_for_status().content
