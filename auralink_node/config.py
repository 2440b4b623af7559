"""The node's configuration, as a validated pydantic model stored in ``<home>/config.toml``.

Theory of operation
-------------------
:class:`NodeConfig` is the one description of how a node runs. It is read from the TOML file
and validated field by field; a bad value raises :class:`~auralink.errors.ConfigError` whose
``field`` names the key and whose message says what is wrong, so the CLI can print one line
that the user can act on. Unknown keys are errors too: a typo in a key name must not be
silently ignored. Later layers (environment variables, then CLI flags) override the file by
building a new model with ``model_copy(update=...)`` and validating again.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from auralink._files import atomic_write
from auralink.errors import AuralinkError, ConfigError
from auralink.identity.handles import parse_handle
from auralink.identity.keys import AuraID
from auralink.identity.records import MAX_LIFETIME, RelayAddress
from auralink.wire.address import Address
from auralink_node.transport.interfaces import expand_unspecified

__all__ = [
    "DEFAULT_PORT",
    "NodeConfig",
    "build_config",
    "load_config",
    "parse_relay_address",
    "resolve_config",
    "save_config",
]

DEFAULT_PORT = 7700
"""The UDP port a node listens on unless configured otherwise."""


class NodeConfig(BaseModel):
    """How one node runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    handle: str | None = None
    """The handle this node claims (``@name.aura``), if any."""
    listen: tuple[str, ...] = (f"0.0.0.0:{DEFAULT_PORT}",)
    """UDP addresses to listen on, as ``HOST:PORT`` (port 0 picks a free port)."""
    bootstrap: tuple[str, ...] = ()
    """Known nodes to join the mesh through, as ``HOST:PORT``."""
    mdns: bool = True
    """Find peers on the local network with mDNS."""
    mdns_interfaces: tuple[str, ...] = ()
    """IPv4 addresses of the interfaces mDNS may use; empty means those of the listen addresses
    (every non-loopback interface for ``0.0.0.0``). mDNS never multicasts anywhere else."""
    metrics: str | None = None
    """Serve Prometheus ``/metrics`` and ``/health`` on this ``HOST:PORT`` (off by default)."""
    relays: tuple[str, ...] = ()
    """Home relays to keep a session on, as ``AURAID@HOST:PORT``; the best are listed in our record."""
    relays_token: str | None = None
    """Access token we present to relays whose policy is ``token``."""
    relay: bool = False
    """Serve as a relay for other nodes (``auralink-node up --relay``)."""
    relay_access: Literal["open", "allow", "token"] = "open"
    """Who may use our relay: anyone, the AuraIDs in ``relay_allow``, or holders of ``relay_token``."""
    relay_allow: tuple[str, ...] = ()
    """AuraIDs admitted when ``relay_access`` is ``allow``."""
    relay_token: str | None = None
    """The token required when ``relay_access`` is ``token``."""
    relay_rate: int = Field(default=12_500_000, ge=1_000, le=10**10)
    """Bytes per second each node may send through our relay."""
    relay_max_peers: int = Field(default=64, ge=1, le=100_000)
    """Distinct peers each node may reach through our relay at once."""
    turn: bool = True
    """When relaying, also serve TURN (RFC 8656, UDP) so that calls can relay media through us."""
    turn_port: int = Field(default=3478, ge=0, le=65535)
    """The UDP port of our TURN server, on the host of our first listen address (0: ephemeral)."""
    record_ttl: int = Field(default=3600, ge=60, le=MAX_LIFETIME)
    """Seconds our signed node record stays valid; it is re-signed at half-life."""
    claim_ttl: int = Field(default=7 * 24 * 3600, ge=60, le=MAX_LIFETIME)
    """Seconds our signed handle claim stays valid (re-signed with the record). Nobody else can
    claim the handle while it is valid, so this is how long the node may be offline and keep it."""

    @field_validator("handle")
    @classmethod
    def _handle(cls, value: str | None) -> str | None:
        return None if value is None else _as_value_error(parse_handle, value)

    @field_validator("listen", "bootstrap")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(str(_as_value_error(Address.parse, item)) for item in value)

    @field_validator("relays")
    @classmethod
    def _relays(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(str(_as_value_error(parse_relay_address, item)) for item in value)

    @field_validator("relay_allow")
    @classmethod
    def _aura_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(str(_as_value_error(AuraID.parse, item)) for item in value)

    @model_validator(mode="after")
    def _relay_policy(self) -> NodeConfig:
        if self.relay_access == "token" and not self.relay_token:
            raise ValueError("relay_access = 'token' needs relay_token")
        return self

    @field_validator("mdns_interfaces")
    @classmethod
    def _ipv4s(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for item in value:
            try:
                out.append(str(ipaddress.IPv4Address(item.strip())))
            except ValueError:
                raise ValueError(f"{item!r} is not an IPv4 address (mDNS interfaces are given by address)") from None
        return tuple(out)

    @field_validator("listen")
    @classmethod
    def _some_listen(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one listen address is needed")
        return value

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: str | None) -> str | None:
        return None if value is None else str(_as_value_error(Address.parse, value))

    def listen_addresses(self) -> tuple[Address, ...]:
        """The listen addresses, parsed."""
        return tuple(Address.parse(item) for item in self.listen)

    def relay_addresses(self) -> list[RelayAddress]:
        """The home relays, parsed."""
        return [parse_relay_address(item) for item in self.relays]

    def mdns_interface_addresses(self, bound: Sequence[Address]) -> list[str]:
        """The IPv4 interface addresses mDNS uses: :attr:`mdns_interfaces`, or those ``bound`` to.

        Loopback is left out unless named explicitly: it reaches no other host, and nodes on one
        host would all hear each other (tests run many there).
        """
        if self.mdns_interfaces:
            return list(self.mdns_interfaces)
        found: list[str] = []
        for address in bound:
            if address.version != 4:
                continue
            for concrete in expand_unspecified(address):
                if not ipaddress.ip_address(concrete.host).is_loopback and concrete.host not in found:
                    found.append(concrete.host)
        return found


def parse_relay_address(text: str) -> RelayAddress:
    """``AURAID@HOST:PORT`` as a :class:`RelayAddress`; raises :class:`ConfigError` or an IdentityError."""
    aura_id, sep, address = text.strip().partition("@")
    if not sep:
        raise ConfigError(f"relay {text!r} is not AURAID@HOST:PORT", "relays")
    return RelayAddress(AuraID.parse(aura_id), Address.parse(address))


def _as_value_error(parse: Any, value: str) -> Any:
    try:
        return parse(value)
    except AuralinkError as exc:  # pydantic reports ValueError with the field's location
        raise ValueError(str(exc)) from exc


def _config_error(exc: ValidationError, source: str) -> ConfigError:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "(root)"
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key (check its spelling)"
    return ConfigError(f"{source}: {field}: {message}", field=field)


def build_config(values: dict[str, Any], source: str = "config") -> NodeConfig:
    """Validate ``values`` into a :class:`NodeConfig`; raise :class:`ConfigError` naming the field."""
    try:
        return NodeConfig.model_validate(values)
    except ValidationError as exc:
        raise _config_error(exc, source) from exc


def load_config(path: Path) -> NodeConfig:
    """Read and validate ``path``; a missing file gives the defaults."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return NodeConfig()
    try:
        values = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix or delete the file") from exc
    return build_config(values, str(path))


_ENV_PREFIX = "AURALINK_"
_LIST_FIELDS = {"listen", "bootstrap", "mdns_interfaces", "relays", "relay_allow"}


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, info in NodeConfig.model_fields.items():
        raw = environ.get(_ENV_PREFIX + name.upper())
        if raw is None:
            continue
        if name in _LIST_FIELDS:
            values[name] = [item.strip() for item in raw.split(",") if item.strip()]
        elif info.annotation is bool:
            lowered = raw.strip().lower()
            if lowered not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                raise ConfigError(f"${_ENV_PREFIX}{name.upper()}: {raw!r} is not a boolean (use true or false)", name)
            values[name] = lowered in {"1", "true", "yes", "on"}
        else:
            values[name] = raw
    return values


def resolve_config(
    path: Path, *, environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> NodeConfig:
    """The effective config: the file, then ``AURALINK_*`` variables, then ``overrides`` (CLI flags).

    Each layer is validated as it is applied, so an error names where the bad value came from.
    """
    config = load_config(path)
    env = dict(os.environ if environ is None else environ)
    from_env = _from_environment(env)
    if from_env:
        config = build_config({**config.model_dump(), **from_env}, "environment (AURALINK_*)")
    flags = {key: value for key, value in (overrides or {}).items() if value is not None}
    if flags:
        config = build_config({**config.model_dump(), **flags}, "command line")
    return config


def save_config(path: Path, config: NodeConfig) -> None:
    """Write ``config`` to ``path`` atomically (mode 0600)."""
    values = config.model_dump(mode="json", exclude_none=True)
    header = "# AuraLink node configuration. See `auralink-node --help` and docs/.\n"
    atomic_write(path, (header + tomli_w.dumps(values)).encode("utf-8"), mode=0o600)
