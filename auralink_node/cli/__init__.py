"""The ``auralink-node`` command line.

Theory of operation
-------------------
The CLI parses arguments, loads the config, calls the library, and prints. It holds no logic of
its own that a library user could not reach. Every command takes ``--json``, which prints one
JSON object on stdout and nothing else there.

Errors are printed as one line on stderr (``error: ...``), never as a traceback, and the exit
code says what kind: 1 for an AuraLink error (bad key, bad config, bad input), 2 for a usage
error (unknown flag, missing argument). With ``--json``, stdout also gets
``{"error": {"type": ..., "message": ...}}``. This is the only module that configures logging.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import typer

try:  # typer >= 0.20 vendors click; older releases use the click package itself
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException, NoArgsIsHelpError, UsageError  # type: ignore[assignment]

from auralink.errors import AuralinkError, ConfigError, KeystoreExists
from auralink.identity.handles import parse_handle
from auralink.identity.keys import AuraID, Identity
from auralink.mesh.daemon import DaemonClient, DaemonUnavailable
from auralink.wire import Address
from auralink_node.cli.agent import register as register_agent_commands
from auralink_node.config import NodeConfig, build_config, load_config, resolve_config, save_config
from auralink_node.errors import DHTError
from auralink_node.home import NodeHome, resolve_home

__all__ = ["app", "main"]

app = typer.Typer(
    name="auralink-node",
    help="Run and manage an AuraLink node: identity, mesh, relays.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
id_app = typer.Typer(help="Show or rotate this node's identity.", no_args_is_help=True)
app.add_typer(id_app, name="id")
dht_app = typer.Typer(help="Inspect the node's DHT.", no_args_is_help=True)
app.add_typer(dht_app, name="dht")
pins_app = typer.Typer(help="Manage the keys handles are pinned to (trust on first use).", no_args_is_help=True)
app.add_typer(pins_app, name="pins")
register_agent_commands(app)  # `caption` and `agent run` (auralink_node/cli/agent.py)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
PassphraseOpt = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file", help="File whose first line is the passphrase that seals the key.", dir_okay=False
    ),
]


@app.callback()
def _root(
    ctx: typer.Context,
    home: Annotated[
        Path | None, typer.Option("--home", help="Node home directory [default: $AURALINK_HOME or ~/.auralink].")
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", envvar="AURALINK_LOG_LEVEL", help="debug, info, warning or error.")
    ] = "warning",
) -> None:
    level = logging.getLevelName(log_level.upper())
    if not isinstance(level, int):
        raise typer.BadParameter(f"{log_level!r} is not one of debug, info, warning, error", param_hint="--log-level")
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level > logging.DEBUG:
        logging.getLogger("quic").setLevel(logging.WARNING)  # aioquic narrates every handshake at INFO
    ctx.obj = NodeHome(resolve_home(home))


def _emit(as_json: bool, payload: dict[str, Any], lines: list[str]) -> None:
    if as_json:
        typer.echo(json.dumps(payload, sort_keys=True))
    else:
        for line in lines:
            typer.echo(line)


def _read_passphrase(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--passphrase-file: cannot read {path}: {exc.strerror}", field="passphrase_file") from exc
    passphrase = raw.split(b"\n", 1)[0].rstrip(b"\r")
    if not passphrase:
        raise ConfigError(
            f"--passphrase-file: {path} is empty; put the passphrase on its first line", field="passphrase_file"
        )
    return passphrase


def _home(ctx: typer.Context) -> NodeHome:
    home = ctx.find_root().obj
    assert isinstance(home, NodeHome)
    return home


@app.command()
def init(
    ctx: typer.Context,
    handle: Annotated[str | None, typer.Option("--handle", help="Handle to claim, e.g. alice or @alice.aura.")] = None,
    passphrase_file: PassphraseOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing identity (the old key is lost).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create this node's identity and config file."""
    home = _home(ctx)
    keystore = home.keystore()
    # Validate every input before touching the disk, so a refusal changes nothing.
    values: dict[str, Any] = {}
    if home.config_path.exists():
        try:
            values = load_config(home.config_path).model_dump(exclude_none=True)
        except ConfigError:
            if not force:
                raise
    if handle is not None:
        values["handle"] = parse_handle(handle)
    config = build_config(values, str(home.config_path))
    passphrase = _read_passphrase(passphrase_file)
    if keystore.exists() and not force:
        raise KeystoreExists(
            f"an identity already exists in {home.root}; nothing was changed (use --force to replace it)",
            str(keystore.path),
        )
    identity = Identity.generate()
    keystore.create(identity, passphrase=passphrase, force=force)
    save_config(home.config_path, config)
    payload = {
        "aura_id": str(identity.aura_id),
        "handle": config.handle,
        "home": str(home.root),
        "sealed": passphrase is not None,
    }
    _emit(
        as_json,
        payload,
        [
            f"created identity {identity.aura_id}",
            f"handle: {config.handle or '(none; set one with --handle)'}",
            f"home:   {home.root}" + ("  (key sealed with passphrase)" if passphrase else ""),
        ],
    )


@id_app.command("show")
def id_show(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Print this node's AuraID, handle and public key (no passphrase needed)."""
    home = _home(ctx)
    keystore = home.keystore()
    aura_id = keystore.aura_id()
    config = load_config(home.config_path)
    payload = {
        "aura_id": str(aura_id),
        "handle": config.handle,
        "public_key": aura_id.public_key.hex(),
        "sealed": keystore.is_sealed(),
        "rotations": len(keystore.rotations()),
        "home": str(home.root),
    }
    _emit(
        as_json,
        payload,
        [
            f"aura_id:    {aura_id}",
            f"handle:     {config.handle or '(none)'}",
            f"public_key: {aura_id.public_key.hex()}",
        ],
    )


@id_app.command("rotate")
def id_rotate(ctx: typer.Context, passphrase_file: PassphraseOpt = None, as_json: JsonOpt = False) -> None:
    """Replace the key with a new one, and record a rotation signed by both keys."""
    keystore = _home(ctx).keystore()
    old = keystore.aura_id()
    new, rotation = keystore.rotate(now=time.time(), passphrase=_read_passphrase(passphrase_file))
    payload = {
        "old_aura_id": str(old),
        "aura_id": str(new.aura_id),
        "rotation_seq": rotation.seq,
        "rotation": rotation.encode().hex(),
    }
    _emit(
        as_json,
        payload,
        [
            f"rotated {old} -> {new.aura_id}",
            "peers that pinned the old key follow the rotation record to the new one",
        ],
    )


@id_app.command("parse")
def id_parse(
    target: Annotated[str, typer.Argument(help="An AuraID (56 characters) or a handle (@name.aura).")],
    as_json: JsonOpt = False,
) -> None:
    """Check an AuraID or handle offline and print its canonical form (catches typos)."""
    text = target.strip()
    if text.startswith("@") or text.endswith(".aura") or len(text) <= 40:  # AuraIDs are 56 characters
        payload: dict[str, Any] = {"kind": "handle", "handle": parse_handle(target)}
        lines = [f"handle: {payload['handle']}"]
    else:
        aura_id = AuraID.parse(target)
        payload = {"kind": "aura_id", "aura_id": str(aura_id), "public_key": aura_id.public_key.hex()}
        lines = [f"aura_id:    {aura_id}", f"public_key: {aura_id.public_key.hex()}"]
    _emit(as_json, payload, lines)


ListenOpt = Annotated[
    list[str] | None,
    typer.Option("--listen", help="UDP HOST:PORT to listen on (repeatable; port 0 picks one).", metavar="HOST:PORT"),
]


@app.command()
def up(  # noqa: PLR0917 - typer maps each option to a parameter
    ctx: typer.Context,
    listen: ListenOpt = None,
    bootstrap: Annotated[
        list[str] | None,
        typer.Option("--bootstrap", help="Known node to join through (repeatable).", metavar="HOST:PORT"),
    ] = None,
    metrics: Annotated[
        str | None, typer.Option("--metrics", help="Serve Prometheus /metrics and /health here.", metavar="HOST:PORT")
    ] = None,
    relay: Annotated[bool, typer.Option("--relay", help="Also serve as a relay for other nodes.")] = False,
    home_relay: Annotated[
        list[str] | None,
        typer.Option("--home-relay", help="A relay to keep a session on (repeatable).", metavar="AURAID@HOST:PORT"),
    ] = None,
    passphrase_file: PassphraseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the node in the foreground until SIGINT or SIGTERM (logs go to stderr)."""
    home = _home(ctx)
    config = resolve_config(
        home.config_path,
        overrides={
            "listen": listen or None,
            "bootstrap": bootstrap or None,
            "metrics": metrics,
            "relay": True if relay else None,
            "relays": home_relay or None,
        },
    )
    if logging.getLogger().level > logging.INFO:
        logging.getLogger().setLevel(logging.INFO)
    asyncio.run(_run_daemon(home, config, _read_passphrase(passphrase_file), as_json))


async def _run_daemon(home: NodeHome, config: NodeConfig, passphrase: bytes | None, as_json: bool) -> None:
    from auralink_node.node import Node  # noqa: PLC0415 - keeps `status`/`ping` startup fast (~0.2 s less)

    async with Node(home, config, passphrase=passphrase) as node:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, node.stop)
        # What start-up built (modules, config, the node's long-lived state) lives as long as the
        # daemon: keep the cyclic collector from re-scanning it on every collection, which
        # otherwise lands on hot paths such as a handshake.
        gc.freeze()
        listen = [str(a) for a in node.listen_addresses]
        ready: dict[str, Any] = {
            "event": "ready",
            "aura_id": str(node.aura_id),
            "listen": listen,
            "control_socket": str(home.root / "node.sock"),
            "metrics": str(node.metrics_address) if node.metrics_address else None,
        }
        _emit(as_json, ready, [f"node {node.aura_id} up on {', '.join(listen)}"])
        sys.stdout.flush()
        await node.run_until_stopped()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _daemon_call(
    ctx: typer.Context, method: str, path: str, body: dict[str, Any] | None = None, timeout: float | None = None
) -> Any:
    async def call() -> Any:
        async with DaemonClient(_home(ctx).root / "node.sock") as client:
            return await client.request(method, path, body, timeout=timeout)

    return asyncio.run(call())


@app.command()
def status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Show the running daemon's identity, addresses and peer count."""
    info = _daemon_call(ctx, "GET", "/v1/status")
    _emit(
        as_json,
        info,
        [
            f"aura_id:  {info['aura_id']}",
            f"handle:   {info['handle'] or '(none)'}",
            f"listen:   {', '.join(info['listen'])}",
            f"peers:    {info['peers']}",
            f"uptime:   {info['uptime_s']:.0f} s",
        ],
    )


@app.command()
def peers(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the peers the daemon knows, connected ones first."""
    info = _daemon_call(ctx, "GET", "/v1/peers")
    lines = [
        f"{'*' if p['connected'] else ' '} {p['aura_id']}  {p['address'] or '-':<22} "
        f"rtt {p['rtt_ms'] if p['rtt_ms'] is not None else '-'} ms"
        for p in info["peers"]
    ] or ["no peers yet"]
    _emit(as_json, info, lines)


def _check_target(target: str) -> str:
    """Validate an AuraID or @handle offline, so a typo fails before the daemon is asked."""
    text = target.strip()
    if text.startswith("@") or text.endswith(".aura"):
        return parse_handle(text)
    return str(AuraID.parse(text))


@app.command()
def resolve(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="AuraID or @handle to look up.")],
    as_json: JsonOpt = False,
) -> None:
    """Find a peer's current key and addresses: records held here, then the DHT and mDNS raced."""
    query = urlencode({"target": _check_target(target)})
    result = _daemon_call(ctx, "GET", f"/v1/resolve?{query}", timeout=30.0)
    if result.get("warning"):
        typer.echo(f"WARNING: {result['warning']}", err=True)
    _emit(
        as_json,
        result,
        [
            f"aura_id:   {result['aura_id']}",
            f"handle:    {result['handle'] or '(none known)'}",
            f"addresses: {', '.join(result['addresses']) or '(none)'}",
            f"source:    {result['source']}" + (f"  (record seq {result['seq']})" if result.get("seq") else ""),
        ],
    )


@app.command()
def join(
    ctx: typer.Context,
    address: Annotated[list[str], typer.Argument(help="A node's UDP address (repeatable).", metavar="HOST:PORT...")],
    passphrase_file: PassphraseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Join the mesh through known nodes, and save them as bootstrap nodes in the config.

    Uses the running daemon if there is one; otherwise starts the node just long enough to join.
    """
    home = _home(ctx)
    targets = [str(Address.parse(item)) for item in address]
    config = load_config(home.config_path)
    try:
        result = _daemon_call(ctx, "POST", "/v1/join", {"addresses": targets}, timeout=30.0)
        via = "daemon"
    except DaemonUnavailable:
        result = asyncio.run(_join_embedded(home, config, targets, _read_passphrase(passphrase_file)))
        via = "embedded"
    if not result["joined"]:
        raise DHTError(
            f"no DHT node answered at {', '.join(targets)}; check the address and port, and that the node "
            "runs `auralink-node up` (nothing was saved)"
        )
    bootstrap = list(dict.fromkeys([*config.bootstrap, *result["joined"]]))
    save_config(home.config_path, config.model_copy(update={"bootstrap": tuple(bootstrap)}))
    payload = {
        "joined": result["joined"],
        "contacts": result["contacts"],
        "bootstrap": bootstrap,
        "config": str(home.config_path),
        "via": via,
    }
    _emit(
        as_json,
        payload,
        [
            f"joined through {', '.join(result['joined'])}: {result['contacts']} DHT contacts",
            f"saved as bootstrap in {home.config_path}",
        ],
    )


async def _join_embedded(home: NodeHome, config: NodeConfig, targets: list[str], passphrase: bytes | None) -> Any:
    from auralink_node.node import Node  # noqa: PLC0415 - only a join without a daemon needs it

    async with Node(home, config, passphrase=passphrase, control_api=False) as node:
        answered = await node.discovery.join(targets)
        return {"joined": answered, "contacts": node.discovery.contact_count()}


@app.command()
def why(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="AuraID or @handle of a connected peer.")],
    as_json: JsonOpt = False,
) -> None:
    """Explain the path to a peer: the one in use, the candidates with their scores, the last switch."""
    query = urlencode({"target": _check_target(target)})
    info = _daemon_call(ctx, "GET", f"/v1/why?{query}")
    decision = info["decision"]
    lines = [f"path: {info['path']}", f"why:  {decision['explanation']}", "candidates:"]
    for c in decision["candidates"]:
        rtt = "-" if c.get("rtt_ms") is None else f"{c['rtt_ms']:.2f} ms"
        lines.append(f"  {c['path']:<66} {c.get('state', ''):<10} rtt {rtt}")
    last = decision.get("last_switch")
    if last:
        lines.append(f"last switch: {last['from']} -> {last['to']} ({last['reason']}): {last['detail']}")
    _emit(as_json, info, lines)


@dht_app.command("status")
def dht_status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Show the DHT routing table, stored records, publishing and misbehaving peers."""
    info = _daemon_call(ctx, "GET", "/v1/dht")
    published = info["last_publish"]
    _emit(
        as_json,
        info,
        [
            f"node id:   {info['node_id']}",
            f"contacts:  {info['contacts']} in {info['buckets']} buckets",
            f"records:   {info['stored_records']} stored here",
            f"published: seq {published['seq']}, accepted by {published['accepted']} peers"
            + (f" ({published['error']})" if published["error"] else ""),
            f"rejected:  {sum(info['rejections'].values())} from {info['misbehaving_peers']} peers",
            f"mdns:      {'on, ' + str(info['mdns']['peers']) + ' peers' if info['mdns']['enabled'] else 'off'}",
        ],
    )


@pins_app.command("forget")
def pins_forget(
    ctx: typer.Context,
    handle: Annotated[str, typer.Argument(help="The @handle whose pinned key to forget.")],
    as_json: JsonOpt = False,
) -> None:
    """Trust the key a handle resolves to next time (after it changed and you checked why)."""
    query = urlencode({"handle": parse_handle(handle)})
    result = _daemon_call(ctx, "DELETE", f"/v1/pins?{query}")
    _emit(
        as_json,
        result,
        [f"{result['handle']}: " + ("pin forgotten" if result["forgotten"] else "was not pinned")],
    )


@app.command()
def ping(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="AuraID or @handle to ping.")],
    addr: Annotated[
        list[str] | None, typer.Option("--addr", help="Address of the target (repeatable).", metavar="HOST:PORT")
    ] = None,
    count: Annotated[int, typer.Option("--count", min=1, max=10_000, help="Pings to send.")] = 4,
    as_json: JsonOpt = False,
) -> None:
    """Ping a peer through the daemon and report round-trip times."""
    checked = _check_target(target)
    for item in addr or []:
        Address.parse(item)
    body = {"target": checked, "addresses": addr or [], "count": count}
    result = _daemon_call(ctx, "POST", "/v1/ping", body, timeout=30.0 + 5.0 * count)
    rtt = result["rtt_ms"]
    _emit(
        as_json,
        result,
        [
            f"ping {result['target'][:10]}... at {result['address']}: {result['received']}/{result['sent']} answered",
            "rtt ms: " + "  ".join(f"{k} {_ms(rtt[k])}" for k in ("p50", "p99", "min", "max")),
        ],
    )
    if result["received"] == 0:
        raise typer.Exit(1)


def _ms(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "-"


@app.command()
def demo(as_json: JsonOpt = False) -> None:
    """Run the built-in demo on embedded defaults: signed records, then two real nodes on loopback."""
    from auralink_node.demo import run_full_demo  # noqa: PLC0415 - only this command needs it

    report = run_full_demo(now=time.time())
    _emit(as_json, report.as_dict(), report.lines())
    if not report.ok:
        raise typer.Exit(1)


def _fail(exc: BaseException, message: str, code: int, as_json: bool) -> int:
    if as_json:
        typer.echo(json.dumps({"error": {"type": type(exc).__name__, "message": message}}))
    typer.echo(f"error: {message}", err=True)
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``auralink-node`` console script; returns the exit code."""
    args = sys.argv[1:] if argv is None else argv
    as_json = "--json" in args
    try:
        result = app(args=args, prog_name="auralink-node", standalone_mode=False)
    except NoArgsIsHelpError as exc:
        typer.echo(exc.format_message(), err=True)
        return 2
    except UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        return _fail(exc, f"{exc.format_message()}{hint}", 2, as_json)
    except ClickException as exc:
        return _fail(exc, exc.format_message(), exc.exit_code, as_json)
    except (typer.Abort, KeyboardInterrupt) as exc:
        return _fail(exc, "aborted", 130, as_json)
    except AuralinkError as exc:
        return _fail(exc, str(exc), 1, as_json)
    except OSError as exc:
        return _fail(exc, f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), 1, as_json)
    return result if isinstance(result, int) else 0


# Commands kept in their own modules register themselves on `app` when imported.
from auralink_node.cli import calls as _calls  # noqa: E402, F401
