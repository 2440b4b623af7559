"""aiortc helpers shared by calls and rooms: the lazy import, and a close that leaves no task behind.

aiortc is imported lazily everywhere in :mod:`auralink.calls`, so the package imports without the
``calls`` extra; :func:`aiortc_module` is the one place that turns a missing aiortc into
:class:`~auralink.errors.CallsNotInstalled`.

Closing: ``RTCPeerConnection.setRemoteDescription`` starts a connect task that aiortc keeps no
reference to. A close that lands while it runs (between two transceivers, say) makes it raise
"RTCIceTransport is closed", and asyncio logs "Task exception was never retrieved".
:func:`close_peer_connection` finds that task before the close and retrieves its outcome after.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from auralink.errors import CallsNotInstalled

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection

__all__ = ["CONNECT_GRACE", "aiortc_module", "close_peer_connection"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

CONNECT_GRACE = 5.0
"""Seconds :func:`close_peer_connection` waits for aiortc's connect task to end after the close."""


def aiortc_module() -> Any:
    """The ``aiortc`` module, or :class:`~auralink.errors.CallsNotInstalled` naming the extra."""
    try:
        import aiortc  # noqa: PLC0415
    except ImportError as exc:
        raise CallsNotInstalled("calls and rooms need aiortc: pip install 'auralink[calls]'", "aiortc") from exc
    return aiortc


def _connect_tasks(pc: RTCPeerConnection) -> list[asyncio.Task[Any]]:
    """aiortc's pending ``RTCPeerConnection.__connect`` tasks of ``pc`` (it keeps no reference to them)."""
    found = []
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        if (
            getattr(coro, "__qualname__", "") == "RTCPeerConnection.__connect"
            and frame is not None
            and frame.f_locals.get("self") is pc
        ):
            found.append(task)
    return found


async def close_peer_connection(pc: RTCPeerConnection) -> None:
    """Close ``pc``, and retrieve what aiortc's connect task raises if the close interrupted it.

    The task is found before the close (a finished coroutine no longer shows its ``self``), awaited
    at most :data:`CONNECT_GRACE` seconds after, and cancelled if it still runs.
    """
    connecting = _connect_tasks(pc)
    await pc.close()
    if not connecting:
        return
    done, pending = await asyncio.wait(connecting, timeout=CONNECT_GRACE)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    for task in done:
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.debug("aiortc's connect task ended with the close: %r", exc)
