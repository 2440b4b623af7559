"""``auralink-node call`` and ``auralink-node answer``: a quick test call, and the echo that answers it.

Both run the call in this process (aiortc lives in the app, not the daemon) over the home's
mesh: the running daemon's if there is one, otherwise an embedded node started for the command.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from auralink.errors import ConfigError
from auralink.wire import Address
from auralink_node.cli import JsonOpt, _check_target, _emit, _home, app

if TYPE_CHECKING:
    from auralink.calls import Call

__all__ = ["answer", "call"]


def _progress(message: str) -> None:
    typer.echo(message, err=True)


@app.command()
def call(  # noqa: PLR0917 - typer maps each option to a parameter
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="AuraID or @handle to call.")],
    video: Annotated[
        Path | None,
        typer.Option("--video", help="Media file to send (default: a stamped test pattern, a tone).", dir_okay=False),
    ] = None,
    duration: Annotated[float, typer.Option("--duration", min=0.5, max=3600, help="Seconds to stay connected.")] = 5.0,
    addr: Annotated[
        list[str] | None, typer.Option("--addr", help="Address of the target (repeatable).", metavar="HOST:PORT")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Place a test call (video, audio and data) and print its stats: setup time, frames, bytes, path.

    The target should run `auralink-node answer`, which echoes media back, so the echo latency
    (glass to glass, both ways) can be measured too.
    """
    checked = _check_target(target)
    for item in addr or []:
        Address.parse(item)
    if video is not None and not video.is_file():
        raise ConfigError(f"--video: no file at {video}", "video")
    report = asyncio.run(_call(_home(ctx).root, checked, addr or [], duration, video))
    echo, rtt = report["echo_latency_ms"], report["data_rtt_ms"]
    path = report["path"] or {}
    _emit(
        as_json,
        report,
        [
            f"call {report['call_id'][:8]} with {report['peer'][:10]}... via {path.get('kind', '?')} "
            f"{path.get('local', '?')} -> {path.get('remote', '?')}",
            f"setup {_s(report['setup_s'])} (resolve {_s(report['resolve_s'])}, signaling {_s(report['signaling_s'])},"
            f" connect {_s(report['connect_s'])}), first frame {_s(report['first_frame_s'])}",
            "frames received: " + ", ".join(f"{k} {v}" for k, v in sorted(report["frames"].items())),
            f"bytes sent {report['bytes_sent']}, received {report['bytes_received']}",
            f"echo latency ms p50 {echo['p50']} p95 {echo['p95']} ({echo['count']} frames);"
            f" data rtt ms p50 {rtt['p50']} ({rtt['count']})",
        ],
    )


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


async def _call(home: Path, target: str, addresses: list[str], duration: float, video: Path | None) -> dict[str, Any]:
    import auralink  # noqa: PLC0415
    from auralink.calls.probe import probe_call  # noqa: PLC0415 - aiortc loads only for calls
    from auralink.identity import AuraID  # noqa: PLC0415

    async with auralink.connect(home) as mesh:
        if addresses and not target.startswith("@"):
            await mesh.dial(AuraID.parse(target), addresses)
        report = await probe_call(mesh, target, duration=duration, video_file=video, progress=_progress)
    return report.as_dict()


@app.command()
def answer(
    ctx: typer.Context,
    count: Annotated[int | None, typer.Option("--count", min=1, help="Stop after this many calls.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer incoming calls and echo their video, audio and data back (a test peer for `call`)."""
    served = asyncio.run(_answer(_home(ctx).root, count))
    _emit(as_json, {"served": served}, [f"served {served} call(s)"])


async def _answer(home: Path, count: int | None) -> int:
    import auralink  # noqa: PLC0415
    from auralink.calls.probe import answer_echo  # noqa: PLC0415

    def told(call: Call, what: str) -> None:
        _progress(f"{what} call {call.call_id[:8]} from {str(call.peer)[:10]}...")

    async with auralink.connect(home) as mesh:
        _progress(f"answering calls for {mesh.identity.aura_id} (Ctrl-C to stop)")
        return await answer_echo(mesh, calls=count, on_call=told)
