"""The AuraLink testing kit, shipped with the library as ``trio.testing`` is.

* :class:`FakeClock` is a ``clock=`` that moves only when the test says so.
* :class:`MemoryNetwork` is a seeded in-memory datagram network with per-link latency, jitter,
  loss, reordering and outages, driven by explicit ``now``; multi-node tests of the sans-I/O
  cores run on it.

Everything here is deterministic: randomness comes only from a ``random.Random(seed)`` owned by
the object that uses it, and time only from arguments. See :mod:`auralink.testing.clock` and
:mod:`auralink.testing.network` for the theory of operation.
"""

from __future__ import annotations

from auralink.testing.clock import FakeClock
from auralink.testing.network import Delivery, HostPort, LinkConditions, MemoryNetwork, NetworkStats

__all__ = ["HostPort", "Delivery", "FakeClock", "LinkConditions", "MemoryNetwork", "NetworkStats"]
