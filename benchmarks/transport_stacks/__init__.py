"""Transport stacks for ``benchmarks/transport.py``: one module per stack, one contract for all.

Theory of operation
-------------------
The harness never imports a stack. It runs each stack as two processes on loopback, through the
same command line, so a stack may use any event loop (asyncio, trio, a Rust runtime) and crash
without taking the harness down::

    python -m benchmarks.transport_stacks.<module> server --port-file F [--identity ID]
    python -m benchmarks.transport_stacks.<module> client --server-info F [--identity ID]
        --connects N --rtt-count N --bytes N [--uploads N]

Server
    Binds ``127.0.0.1:0``, writes a JSON object (``ServerInfo``: host, port, public key,
    stack-specific address) to the port file atomically, then prints ``READY`` on stdout. It
    serves until stdin reaches end of file or it receives SIGTERM/SIGINT.

Client
    Runs every measurement against that server and prints one JSON object (``ClientReport``) on
    stdout. Raw samples are summarised (p50/p99/mean/min/max/n) in the client; nothing else goes
    to stdout.

Identities
    Every stack authenticates both ends with Ed25519 keys derived from 32-byte seeds. The harness
    writes one identity file per side (``{"secret_seed_hex", "peer_public_key_hex"}``): a server
    refuses any client whose key is not ``peer_public_key_hex``, and a client refuses a server
    whose key differs. Without ``--identity`` a side makes a random key, the server accepts any
    authenticated client, and the client pins the key from the server-info file.

Application protocol (the same services on every stack)
    * echo: the client opens a bidirectional stream and sends 64-byte messages one at a time; the
      server writes back whatever it reads.
    * sink: the client uploads N bytes on one stream and half-closes it; the server replies with
      the byte count (8 bytes, big-endian) and the SHA-256 of what it received (32 bytes). The
      client times the upload from its first write to that confirmation and checks both.

    Stacks with ALPN-level multiplexing (aioquic, iroh) tag each stream with one leading byte
    (``E`` or ``S``); py-libp2p uses protocol ids, its native way.

Metrics (all times in milliseconds, throughput in MB/s with MB = 10**6 bytes)
    * ``connect_ms``: from starting the dial until the handshake is done, the peer's identity is
      verified and the connection is usable. Each sample is a fresh connection, closed after.
    * ``connect_first_echo_ms``: the same dial, until the first 64-byte echo comes back on a new
      stream. It includes the server's verdict on the client, so it compares like with like.
    * ``reconnect_ms``: a later connection that reuses state from an earlier one (TLS session
      resumption, 0-RTT where possible), until the first echo comes back; ``null`` when the stack
      cannot resume.
    * ``rtt_ms``: 64-byte echo round trips on one stream of one connection.
    * ``throughput_mb_s``: median over the uploads of the sink service.

Adding a stack: write ``<name>_stack.py`` here with ``main()`` built on
``_common.run_stack_cli`` and add one line to ``STACKS`` in ``benchmarks/transport.py``.
"""
