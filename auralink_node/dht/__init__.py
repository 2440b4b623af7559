"""The node's Kademlia DHT: signed AuraLink records stored under their own 20-byte keys.

Theory of operation
-------------------
The DHT maps a 20-byte key (``record.dht_key()``: the hash of an AuraID's public key, of a
normalised handle, or of a rotated key) to the one encoded record that is valid and newest for
it. It is the ``kademlia`` package (2.2.3) with its protocol and routing table replaced by
subclasses and its lookups by our own, in :mod:`auralink_node.dht.server`, which fix the defects
listed in issue 4; :mod:`auralink_node.dht.core` holds the sans-I/O parts: a validating store that
applies the :class:`~auralink.identity.book.RecordBook` rules, the per-peer rate limit, the RTT
estimator and the lookup state machine. Peers that send invalid records or garbage are
counted in :attr:`DHTServer.misbehaviour`, never raised into the caller.

```python
dht = DHTServer(identity.aura_id.dht_key(), clock=time.time)
await dht.listen(0, interface="127.0.0.1")
await dht.bootstrap([("127.0.0.1", 7700)])
await dht.put(node_record)                     # PublishFailed if no peer accepted it
record = await dht.get_record(aura_id.dht_key())
```
"""

from __future__ import annotations

from auralink_node.dht.core import PeerRateLimiter, RateLimit, RecordStorage, check_value
from auralink_node.dht.server import DHTConfig, DHTServer
from auralink_node.errors import DHTError, PublishFailed, UnsafeOperation

__all__ = [
    "DHTConfig",
    "DHTError",
    "DHTServer",
    "PeerRateLimiter",
    "PublishFailed",
    "RateLimit",
    "RecordStorage",
    "UnsafeOperation",
    "check_value",
]
