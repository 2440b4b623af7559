"""The three processes of ``benchmarks/relay.py``: a relay R, a server B and a client A.

Theory of operation
-------------------
The harness never imports a node. It runs each role as its own process, an embedded
:class:`auralink_node.Node` on its own event loop, through one command line::

    python -m benchmarks.relay_stack.node relay  --home H --seed-hex S [--relay-rate N]
    python -m benchmarks.relay_stack.node server --home H --seed-hex S --relay AURAID@HOST:PORT
        --client AURAID
    python -m benchmarks.relay_stack.node client --home H --seed-hex S --relay AURAID@HOST:PORT
        --server AURAID@HOST:PORT --pids R,B --rounds N --pings N --bytes N --uploads N --seed N

Every node listens on ``127.0.0.1:0`` only, with mDNS off and no bootstrap nodes, so nothing
leaves loopback. The relay serves ``auralink/relay/1`` (``config.relay``); the server and the
client hold a session on it (``config.relays``, their home relay). Each long-running role
prints one JSON line (``{"event": "ready", ...}``) on stdout once it can be used, serves until
its stdin reaches end of file or it gets SIGTERM/SIGINT, then prints one more JSON line with
its counters (``{"event": "stopped", ...}``). The client prints its report as one JSON line and
exits.

Forcing the path. A node's path manager (:mod:`auralink_node.paths`) would move a relayed
connection to the direct path within a few probe rounds: on loopback the "hole punch" always
works. Every node here therefore stops serving ``auralink/paths/1`` (``Node.unserve``) before
any connection exists. The dialler's offer is then refused, no probe key is ever agreed, no
probe is sent, and no selector ever runs, so each connection keeps the path it was dialled on,
at both ends, for its whole life. A relayed connection is dialled with no direct address and
one relay path (``Endpoint.connect(peer, [], [link.path_to(peer)])``), a direct one with the
server's address and no relay. The client checks both ends' view of the path after every
block (the server answers ``bench/path/1`` with its side's ``PeerConnection.path``), and the
relay's forwarding counters are reported, so a run that was silently not relayed cannot pass.

Services on the server: ``auralink/ping/1`` (built in: the RTT figure), ``bench/sink/1`` (reads
until end of stream, answers the byte count and SHA-256) and ``bench/path/1``.
"""
