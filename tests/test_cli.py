"""The auralink-node CLI: contract keys, one-line errors, and bad input that changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from auralink.identity import AuraID, Keystore
from auralink_node.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert isinstance(result, dict)
    return result


def tree(root: Path) -> dict[str, tuple[bytes, int]]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode) for p in files}


@pytest.fixture(autouse=True)
def _no_user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AURALINK_HOME", str(tmp_path / "env-home"))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "node"


def test_init_then_id_show_prints_the_contract_keys(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    created = run_json(capsys, "--home", str(home), "init", "--handle", "Alice")
    shown = run_json(capsys, "--home", str(home), "id", "show")
    assert shown["aura_id"] == created["aura_id"]
    assert shown["handle"] == "@alice.aura"
    assert AuraID.parse(str(shown["aura_id"])).public_key.hex() == shown["public_key"]
    assert (home / "config.toml").exists()
    assert oct((home / "key").stat().st_mode & 0o777) == "0o600"


def test_home_comes_from_the_environment_when_not_given(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run_json(capsys, "init")
    assert (tmp_path / "env-home" / "key").exists()


def test_init_refuses_an_existing_home_and_changes_nothing(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    run_json(capsys, "--home", str(home), "init", "--handle", "alice")
    before = tree(home)
    code, out, err = run(capsys, "--home", str(home), "init", "--handle", "bob", "--json")
    assert code == 1
    assert json.loads(out)["error"]["type"] == "KeystoreExists"
    assert err.count("\n") == 1 and "--force" in err
    assert tree(home) == before
    forced = run_json(capsys, "--home", str(home), "init", "--handle", "bob", "--force")
    assert forced["handle"] == "@bob.aura"


def test_rotate_writes_a_new_key_and_a_rotation_record(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    created = run_json(capsys, "--home", str(home), "init")
    rotated = run_json(capsys, "--home", str(home), "id", "rotate")
    assert rotated["old_aura_id"] == created["aura_id"]
    assert rotated["aura_id"] != created["aura_id"]
    shown = run_json(capsys, "--home", str(home), "id", "show")
    assert shown["aura_id"] == rotated["aura_id"] and shown["rotations"] == 1
    (rotation,) = Keystore(home / "key").rotations()
    assert str(rotation.old) == created["aura_id"]


def test_sealed_identity_with_passphrase_file(capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path) -> None:
    secret = tmp_path / "pass"
    secret.write_text("hunter2\n")
    created = run_json(capsys, "--home", str(home), "init", "--passphrase-file", str(secret))
    assert created["sealed"] is True
    assert run_json(capsys, "--home", str(home), "id", "show")["sealed"] is True
    rotated = run_json(capsys, "--home", str(home), "id", "rotate", "--passphrase-file", str(secret))
    assert rotated["old_aura_id"] == created["aura_id"]


def test_id_parse_checks_ids_and_handles(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    created = run_json(capsys, "--home", str(home), "init")
    parsed = run_json(capsys, "id", "parse", str(created["aura_id"]).upper())
    assert parsed == {"kind": "aura_id", "aura_id": created["aura_id"], "public_key": parsed["public_key"]}
    assert run_json(capsys, "id", "parse", "@Bob")["handle"] == "@bob.aura"


def test_demo_runs_on_embedded_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    report = run_json(capsys, "demo")
    assert report["ok"] is True
    steps = report["steps"]
    assert isinstance(steps, list) and all(step["ok"] for step in steps)
    assert {"@alice.aura", "@bob.aura"} <= set(report["identities"])  # type: ignore[arg-type]
    names = [step["name"] for step in steps]
    assert "alice dials bob's AuraID over QUIC" in names  # two real nodes ran on loopback
    assert "alice pings @bob.aura" in names


def _bad_cases(home: Path, tmp_path: Path) -> dict[str, list[str]]:
    wrong = tmp_path / "wrong-pass"
    wrong.write_text("not it\n")
    mistyped = "y" * 56
    return {
        "wrong passphrase": ["--home", str(home), "id", "rotate", "--passphrase-file", str(wrong)],
        "mistyped aura id": ["id", "parse", mistyped],
        "invalid handle": ["--home", str(home), "init", "--force", "--handle", "\u0430lice"],
        "missing passphrase file": ["--home", str(home), "id", "rotate", "--passphrase-file", str(tmp_path / "nope")],
        "unknown flag": ["--home", str(home), "id", "show", "--bogus"],
    }


def test_bad_input_gives_one_line_error_non_zero_exit_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "pass"
    secret.write_text("right\n")
    run_json(capsys, "--home", str(home), "init", "--passphrase-file", str(secret))
    before = tree(home)
    for name, args in _bad_cases(home, tmp_path).items():
        code, out, err = run(capsys, *args)
        assert code in (1, 2), name
        assert err.startswith("error: ") and err.count("\n") == 1, (name, err)
        assert "Traceback" not in err + out, name
        assert tree(home) == before, name


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda key: key.write_text("{garbage"), "corrupt"),
        (lambda key: key.write_bytes(key.read_bytes()[:40]), "corrupt"),
        (lambda key: key.chmod(0o644), "chmod 600"),
        (lambda key: key.unlink(), "auralink-node init"),
    ],
)
def test_damaged_keystore_in_a_real_process(home: Path, damage: object, expected: str) -> None:
    """The installed console script, as a user runs it: one line on stderr, exit 1, no traceback."""
    subprocess.run(["auralink-node", "--home", str(home), "init"], check=True, capture_output=True)
    damage(home / "key")  # type: ignore[operator]
    before = tree(home)
    for command in (["id", "show"], ["id", "rotate"]):
        done = subprocess.run(
            ["auralink-node", "--home", str(home), *command],
            capture_output=True,
            text=True,
            env={**os.environ, "AURALINK_HOME": str(home)},
            timeout=60,
            check=False,
        )
        assert done.returncode == 1
        assert done.stdout == ""
        assert done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr
        assert tree(home) == before


def test_module_entry_point_matches_console_script(home: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "auralink_node.cli", "--home", str(home), "id", "parse", "alice", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"kind": "handle", "handle": "@alice.aura"}
