"""Import rules and the public API: the layering of DESIGN.md section 3, checked."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import auralink
import auralink.errors
import auralink.identity
import auralink.testing
import auralink.wire
import auralink_node
import auralink_node.errors

ROOT = Path(__file__).resolve().parent.parent

# Sans-I/O cores: no asyncio, no sockets, no clocks; randomness only through an injected Random.
PURE_CORES = [
    "auralink/errors.py",
    "auralink/wire/buffer.py",
    "auralink/wire/address.py",
    "auralink/wire/frames.py",
    "auralink/identity/keys.py",
    "auralink/identity/handles.py",
    "auralink/identity/records.py",
    "auralink/identity/book.py",
    "auralink/testing/clock.py",
    "auralink/testing/network.py",
    "auralink/aic/engine.py",
    "auralink/aic/features.py",
    "auralink/agents/speech/audio.py",
    "auralink/agents/speech/wer.py",
    "auralink/agents/tools/types.py",
    "auralink/calls/messages.py",
    "auralink/calls/signaling.py",
    "auralink/calls/grants.py",
    "auralink/calls/room_messages.py",
    "auralink/calls/room_state.py",
    "auralink_node/dht/core.py",
    "auralink_node/routing/model.py",
    "auralink_node/routing/context.py",
    "auralink_node/routing/selector.py",
    "auralink_node/reputation.py",
    "auralink_node/turn/core.py",
    "auralink_node/turn/credentials.py",
    "auralink_node/transport/tls.py",
    "auralink_node/transport/quic.py",
]
FORBIDDEN_IN_CORES = {"asyncio", "socket", "time", "selectors", "threading"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_sdk_imports_the_node_package_only_lazily_in_connect() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "auralink").rglob("*.py")
        if any(name.split(".")[0] == "auralink_node" for name in imported_modules(path))
    ]
    assert offenders == ["auralink/mesh/__init__.py"]
    tree = ast.parse((ROOT / "auralink/mesh/__init__.py").read_text())
    for node in tree.body:  # never at module level: importing the SDK must not load the node
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("auralink_node")


def test_importing_the_sdk_loads_nothing_of_the_node() -> None:
    code = (
        "import sys, auralink, auralink.identity, auralink.wire, auralink.testing, auralink.errors;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('auralink_node', 'aioquic', 'typer')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"


def test_pure_cores_import_no_io_or_clocks() -> None:
    for relative in PURE_CORES:
        names = {name.split(".")[0] for name in imported_modules(ROOT / relative)}
        assert not names & FORBIDDEN_IN_CORES, relative


def test_pure_cores_use_random_only_through_an_instance() -> None:
    for relative in PURE_CORES:
        tree = ast.parse((ROOT / relative).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "random":
                assert node.attr == "Random", f"{relative}: random.{node.attr} (module-level randomness)"


def test_every_module_has_a_docstring() -> None:
    for package in ("auralink", "auralink_node"):
        for path in (ROOT / package).rglob("*.py"):
            assert ast.get_docstring(ast.parse(path.read_text())), f"{path.relative_to(ROOT)} has no docstring"


def test_one_exception_tree() -> None:
    for module in (auralink.errors, auralink_node.errors):
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type):
                assert issubclass(obj, auralink.errors.AuralinkError), name


def test_public_api_snapshot() -> None:
    """Changing the public API is a decision: update this snapshot on purpose, never by accident."""
    assert sorted(auralink.__all__) == [
        "AuraID",
        "AuralinkError",
        "Identity",
        "Mesh",
        "Stream",
        "__version__",
        "connect",
        "parse_handle",
    ]
    assert sorted(auralink.identity.__all__) == [
        "AuraID",
        "HandleClaim",
        "Identity",
        "KdfLimits",
        "KeyRotation",
        "Keystore",
        "NodeRecord",
        "RECORD_MAX_SIZE",
        "Record",
        "RecordBook",
        "RelayAddress",
        "decode_record",
        "follow_rotations",
        "parse_handle",
        "pull_record",
        "push_record",
        "verify_signature",
    ]
    assert sorted(auralink.wire.__all__) == sorted(SNAPSHOT_WIRE)
    assert sorted(auralink.testing.__all__) == sorted(SNAPSHOT_TESTING)
    assert sorted(auralink_node.__all__) == ["NodeConfig", "NodeError", "NodeHome", "resolve_home"]
    for module in (auralink, auralink.identity, auralink.wire, auralink.testing, auralink_node):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


SNAPSHOT_WIRE = [
    "Address",
    "Buffer",
    "BufferReadError",
    "DEFAULT_MAX_FRAME_SIZE",
    "Frame",
    "FrameDecoder",
    "Message",
    "MessageCodec",
    "WIRE_VERSION",
    "pull_address",
    "pull_frame",
    "push_address",
    "push_frame",
]
SNAPSHOT_TESTING = ["Delivery", "HostPort", "FakeClock", "LinkConditions", "MemoryNetwork", "NetworkStats"]
