"""Node configuration: the file, then AURALINK_* variables, then flags; bad values name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from auralink.errors import ConfigError
from auralink_node.config import NodeConfig, load_config, resolve_config, save_config


def test_defaults_without_a_file(tmp_path: Path) -> None:
    config = resolve_config(tmp_path / "config.toml", environ={})
    assert config == NodeConfig()
    assert config.listen == ("0.0.0.0:7700",) and config.mdns is True and config.metrics is None


def test_layers_apply_in_order(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    save_config(path, NodeConfig(handle="@alice.aura", listen=("127.0.0.1:7000",), mdns=True))
    env = {"AURALINK_LISTEN": "127.0.0.1:7001, [::1]:7001", "AURALINK_MDNS": "off", "AURALINK_HANDLE": "bob"}
    config = resolve_config(path, environ=env, overrides={"listen": ["127.0.0.1:0"], "metrics": None})
    assert config.listen == ("127.0.0.1:0",)  # flag beats environment beats file
    assert config.mdns is False
    assert config.handle == "@bob.aura"
    assert load_config(path).listen == ("127.0.0.1:7000",)  # nothing was written back


@pytest.mark.parametrize(
    ("source", "values", "message"),
    [
        ("file", 'listen = ["nowhere"]\n', "listen"),
        ("file", 'handle = "a_b"\n', "handle"),
        ("file", "lisen = []\n", "unknown key"),
        ("file", "record_ttl = 5\n", "record_ttl"),
        ("file", "listen = [\n", "not valid TOML"),
        ("env", {"AURALINK_MDNS": "maybe"}, "AURALINK_MDNS"),
        ("env", {"AURALINK_METRICS": "localhost:9"}, r"environment \(AURALINK_\*\): metrics"),
        ("flag", {"listen": ["1.2.3.4"]}, "command line: listen"),
    ],
)
def test_bad_values_name_their_source_and_field(tmp_path: Path, source: str, values: object, message: str) -> None:
    path = tmp_path / "config.toml"
    env: dict[str, str] = {}
    flags: dict[str, object] = {}
    if source == "file":
        path.write_text(str(values))
    elif source == "env":
        env = dict(values)  # type: ignore[call-overload]
    else:
        flags = dict(values)  # type: ignore[call-overload]
    with pytest.raises(ConfigError, match=message):
        resolve_config(path, environ=env, overrides=flags)
