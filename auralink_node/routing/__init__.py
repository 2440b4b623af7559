"""Route selection: which of a peer's paths (direct addresses, relays) a connection uses, and why.

Theory of operation
-------------------
Three pure cores, no I/O and no clock (time is ``now``, monotonic seconds):

* :mod:`auralink_node.routing.model`: :class:`PathModel`, the online estimate of one path (RTT by
  a Kalman filter, jitter, discounted loss, silence from the PTO, outage hazard), and the path names
  ``direct:HOST:PORT`` and ``relay:AURAID``.
* :mod:`auralink_node.routing.context`: :class:`PathContext`, the ``ctx`` of ``select``: one per
  peer, with the candidates, the observations the adapter feeds in, the current path and a
  history of :class:`PathSwitch` records.
* :mod:`auralink_node.routing.selector`: the :class:`PathSelector` protocol and two selectors,
  :class:`BiasedRttSelector` (the iroh-like baseline) and :class:`LearnedSelector` (the default).
  Each ``select(ctx, now)`` returns a :class:`Decision` that explains itself, asks for probes and
  says when to call again.

The adapter (the socket layer under the QUIC connection) owns the timer and the probes; it is not
here.
"""

from auralink_node.routing.context import PathContext, PathSwitch, Reason
from auralink_node.routing.model import (
    ModelConfig,
    PathEstimate,
    PathKind,
    PathModel,
    PathPrior,
    PathState,
    canonical_path,
    path_kind,
)
from auralink_node.routing.selector import (
    BiasedRttConfig,
    BiasedRttSelector,
    Decision,
    LearnedConfig,
    LearnedSelector,
    PathScore,
    PathSelector,
)

__all__ = [
    "BiasedRttConfig",
    "BiasedRttSelector",
    "Decision",
    "LearnedConfig",
    "LearnedSelector",
    "ModelConfig",
    "PathContext",
    "PathEstimate",
    "PathKind",
    "PathModel",
    "PathPrior",
    "PathScore",
    "PathSelector",
    "PathState",
    "PathSwitch",
    "Reason",
    "canonical_path",
    "path_kind",
]
