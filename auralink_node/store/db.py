"""The node's database: ``<home>/node.db``, SQLite in WAL mode, with versioned migrations.

Theory of operation
-------------------
:class:`NodeStore` remembers what a node learns about other nodes so that a restart does not
start from nothing: the peers it has seen (with their last signed node record), the addresses
each peer was reached at or announced, and per-path statistics (smoothed RTT and loss) that the
route selector uses as its prior.

*Durability.* The database runs in WAL mode with ``synchronous=NORMAL``. Every mutating method
is one short ``BEGIN IMMEDIATE ... COMMIT`` transaction. A process that dies at any point,
``kill -9`` included, leaves every committed transaction intact: SQLite replays the WAL on the
next open. (``synchronous=NORMAL`` may lose the last transactions on *power loss*, never
consistency; for a cache of network observations that is the right trade.) The file and its
``-wal``/``-shm`` companions have mode 0600: who a node talks to is private.

*Migrations.* :data:`MIGRATIONS` is an ordered tuple of :class:`Migration` (version, description,
SQL). ``PRAGMA user_version`` holds the version a file is at; opening applies each newer
migration in its own transaction, together with the version bump, so a crash mid-migration leaves
the file at the previous version and the next open retries. Adding a table (reputation, DHT
contacts) means appending one :class:`Migration` with the next version number; never edit one
that has shipped. Foreign keys are off while migrations run, as SQLite's "making other kinds of
table schema changes" recipe requires, and ``PRAGMA foreign_key_check`` must pass before each
migration commits. ``PRAGMA application_id`` marks the file as ours, so that another program's
database is refused instead of being migrated. Opening, the pragmas, the migrations and the
transactions are those every AuraLink database shares (``auralink._sqlite``); this module holds
the node's schema and what it does with it.

*Refusals.* Opening never damages a file it does not understand. A file that is not SQLite or is
damaged raises :class:`StoreCorrupt`; a file written by a newer AuraLink raises
:class:`StoreTooNew`; both say what to do and leave the file untouched.

*Time.* Methods that record time take ``now``: wall-clock seconds since the epoch, supplied by
the caller, because these values outlive the process (a monotonic clock restarts at boot).
Nothing here reads a clock.

*Threads.* One connection serves the store, guarded by a lock, so calls may come from the event
loop or from ``asyncio.to_thread`` workers; each call holds the lock for one short transaction.

Inputs are validated before any SQL runs, and all SQL is parameterised. A malformed AuraID
raises :class:`~auralink.errors.InvalidAuraID`, a malformed handle
:class:`~auralink.errors.InvalidHandle`, anything else the caller got wrong
:class:`~auralink.errors.LocalProtocolError`. SQLite's own errors are translated to
:class:`StoreError` (and its subclasses) once, where the transaction runs.
"""

from __future__ import annotations

import ipaddress
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, get_args

from auralink._sqlite import Database, DatabaseErrors, DatabaseKind, Migration
from auralink.errors import AuralinkError, ConfigError, LocalProtocolError
from auralink.identity.handles import parse_handle
from auralink.identity.keys import AuraID
from auralink.identity.records import RECORD_MAX_SIZE
from auralink.wire.address import Address
from auralink_node.errors import StoreCorrupt, StoreError, StoreTooNew
from auralink_node.reputation import ReputationEntry, Role

__all__ = [
    "ADDRESS_SOURCES",
    "AddressRow",
    "AddressSource",
    "MIGRATIONS",
    "Migration",
    "NodeStore",
    "PathRow",
    "PeerRow",
    "StoreCorrupt",
    "StoreError",
    "StoreTooNew",
    "direct_path",
    "relay_path",
]

APPLICATION_ID = 0x4155524C
"""``PRAGMA application_id`` of a node database ("AURL")."""

BUSY_TIMEOUT_MS = 5000
"""How long a writer waits for another connection's lock before giving up."""

RTT_ALPHA = 1 / 8
"""Gain of the smoothed RTT (RFC 6298, section 2)."""

RTT_BETA = 1 / 4
"""Gain of the RTT variation (RFC 6298, section 2)."""

LOSS_ALPHA = 1 / 8
"""Gain of the smoothed loss rate; one lost probe moves it by an eighth."""

MAX_CONTACTS = 256
"""DHT contacts kept across restarts (the most recently seen)."""

DHT_ID_SIZE = 20
"""Bytes in a DHT node ID."""

AddressSource = Literal["config", "dialed", "mdns", "observed", "record"]
"""How an address was learned: configured, dialled by us, found on the LAN, seen as a packet source,
or read from the peer's signed node record."""

ADDRESS_SOURCES: tuple[str, ...] = get_args(AddressSource)
"""Every valid :data:`AddressSource`."""


# ---------------------------------------------------------------------------------------------
# Schema

_KIND = DatabaseKind(
    "node database",
    APPLICATION_ID,
    DatabaseErrors(failed=StoreError, corrupt=StoreCorrupt, too_new=StoreTooNew),
    advice="The node keeps only a cache of what it learned from the network there: move the file away "
    "(for example `mv {path} {path}.broken`) and start the node again to rebuild it",
    busy_timeout_ms=BUSY_TIMEOUT_MS,
)
"""How the node database is opened, and what its refusals raise."""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "peers, their addresses and path statistics",
        """
        CREATE TABLE peers (
            aura_id     TEXT PRIMARY KEY NOT NULL,
            handle      TEXT,
            first_seen  REAL NOT NULL,
            last_seen   REAL NOT NULL,
            last_record BLOB,
            connects    INTEGER NOT NULL DEFAULT 0,
            failures    INTEGER NOT NULL DEFAULT 0
        );

        CREATE TABLE peer_addresses (
            aura_id     TEXT NOT NULL REFERENCES peers (aura_id) ON DELETE CASCADE,
            address     TEXT NOT NULL,
            source      TEXT NOT NULL,
            first_seen  REAL NOT NULL,
            last_seen   REAL NOT NULL,
            successes   INTEGER NOT NULL DEFAULT 0,
            failures    INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (aura_id, address)
        ) WITHOUT ROWID;

        CREATE TABLE path_stats (
            aura_id      TEXT NOT NULL REFERENCES peers (aura_id) ON DELETE CASCADE,
            path         TEXT NOT NULL,
            samples      INTEGER NOT NULL DEFAULT 0,
            rtt_ewma_ms  REAL,
            rtt_var_ms   REAL,
            loss_samples INTEGER NOT NULL DEFAULT 0,
            loss_ewma    REAL NOT NULL DEFAULT 0.0,
            last_update  REAL NOT NULL,
            PRIMARY KEY (aura_id, path)
        ) WITHOUT ROWID;

        CREATE INDEX peers_by_last_seen ON peers (last_seen);
        """,
    ),
    Migration(
        2,
        "DHT contacts, handle pins and the node's own record sequence number",
        """
        CREATE TABLE dht_contacts (
            node_id    BLOB PRIMARY KEY NOT NULL,
            host       TEXT NOT NULL,
            port       INTEGER NOT NULL,
            last_seen  REAL NOT NULL
        ) WITHOUT ROWID;

        CREATE TABLE handle_pins (
            handle     TEXT PRIMARY KEY NOT NULL,
            aura_id    TEXT NOT NULL,
            pinned_at  REAL NOT NULL,
            last_seen  REAL NOT NULL
        ) WITHOUT ROWID;

        CREATE TABLE node_state (
            key        TEXT PRIMARY KEY NOT NULL,
            value      INTEGER NOT NULL
        ) WITHOUT ROWID;

        CREATE INDEX dht_contacts_by_last_seen ON dht_contacts (last_seen);
        """,
    ),
    Migration(
        3,
        "reputation of peers and relays, with bans",
        """
        CREATE TABLE reputation_scores (
            role         TEXT NOT NULL CHECK (role IN ('peer', 'relay')),
            aura_id      TEXT NOT NULL,
            positive     REAL NOT NULL CHECK (positive >= 0),
            negative     REAL NOT NULL CHECK (negative >= 0),
            strikes      REAL NOT NULL DEFAULT 0 CHECK (strikes >= 0),
            updated_at   REAL NOT NULL,
            banned_until REAL,
            ban_reason   TEXT,
            bans         INTEGER NOT NULL DEFAULT 0 CHECK (bans >= 0),
            PRIMARY KEY (role, aura_id)
        ) WITHOUT ROWID;
        """,
    ),
)
"""The schema's history, oldest first. Append; never edit a step that has shipped."""


# ---------------------------------------------------------------------------------------------
# Rows


@dataclass(frozen=True, slots=True)
class PeerRow:
    """What the node remembers about one peer."""

    aura_id: str
    """The peer's AuraID, canonical text form."""
    handle: str | None
    """The last handle seen for the peer (``@name.aura``), unverified here."""
    first_seen: float
    """When the node first heard of the peer (wall-clock seconds)."""
    last_seen: float
    """When the peer was last seen, or first heard of if not seen since (never moves backwards)."""
    last_record: bytes | None
    """The last signed node record stored for the peer, as encoded bytes."""
    connects: int
    """Connections established with the peer."""
    failures: int
    """Connection attempts to the peer that failed."""


@dataclass(frozen=True, slots=True)
class AddressRow:
    """One address at which a peer was reached or announced."""

    aura_id: str
    """The peer's AuraID."""
    address: str
    """``HOST:PORT`` (``[HOST]:PORT`` for IPv6), canonical."""
    source: str
    """How the address was most recently learned; one of :data:`ADDRESS_SOURCES`."""
    first_seen: float
    """When the address was first learned."""
    last_seen: float
    """When the address was last learned or used (never moves backwards)."""
    successes: int
    """Dials to this address that succeeded."""
    failures: int
    """Dials to this address that failed."""


@dataclass(frozen=True, slots=True)
class PathRow:
    """Smoothed measurements of one path to a peer."""

    aura_id: str
    """The peer's AuraID."""
    path: str
    """``direct:HOST:PORT`` or ``relay:AURAID``; see :func:`direct_path` and :func:`relay_path`."""
    samples: int
    """RTT samples folded into the estimate."""
    rtt_ewma_ms: float | None
    """Smoothed RTT in milliseconds (RFC 6298 SRTT); ``None`` before the first sample."""
    rtt_var_ms: float | None
    """RTT variation in milliseconds (RFC 6298 RTTVAR); ``None`` before the first sample."""
    loss_samples: int
    """Loss probes folded into the estimate."""
    loss_ewma: float
    """Smoothed loss rate from 0 (none) to 1 (all); starts at 0."""
    last_update: float
    """When a sample was last recorded."""


# ---------------------------------------------------------------------------------------------
# Validation


def _aura_id(value: AuraID | str) -> str:
    return str(value) if isinstance(value, AuraID) else str(AuraID.parse(value))


def _now(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise LocalProtocolError(f"now must be finite, non-negative wall-clock seconds, not {value!r}")
    return float(value)


def _address(value: Address | str) -> str:
    if isinstance(value, str):
        try:
            value = Address.parse(value)
        except ConfigError as exc:
            raise LocalProtocolError(str(exc)) from exc
    if not isinstance(value, Address):
        raise LocalProtocolError(f"an address is HOST:PORT, not {type(value).__name__}")
    if value.port == 0:
        raise LocalProtocolError(f"address {value}: port 0 cannot be dialled")
    return str(value)


def _host_port(host: str, port: int) -> tuple[str, int]:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise LocalProtocolError(f"a contact port is 1 to 65535, not {port!r}")
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError as exc:
        raise LocalProtocolError(f"a contact host is an IP address, not {host!r}") from exc


def _path(value: str) -> str:
    if not isinstance(value, str):
        raise LocalProtocolError(f"a path is a string, not {type(value).__name__}")
    kind, sep, rest = value.partition(":")
    if sep and kind == "direct":
        return direct_path(rest)
    if sep and kind == "relay":
        return relay_path(rest)
    raise LocalProtocolError(f"path {value!r} is neither 'direct:HOST:PORT' nor 'relay:AURAID'")


def direct_path(address: Address | str) -> str:
    """The path name of a direct UDP path to ``address``: ``direct:HOST:PORT``."""
    return f"direct:{_address(address)}"


def relay_path(relay: AuraID | str) -> str:
    """The path name of a path through the relay ``relay``: ``relay:AURAID``."""
    return f"relay:{_aura_id(relay)}"


def _rtt_update(srtt: float | None, rttvar: float | None, sample: float) -> tuple[float, float]:
    """Fold one RTT sample into (SRTT, RTTVAR) as RFC 6298 section 2 does."""
    if srtt is None or rttvar is None:
        return sample, sample / 2  # (2.2): the first measurement
    rttvar = (1 - RTT_BETA) * rttvar + RTT_BETA * abs(srtt - sample)  # (2.3), with the old SRTT
    srtt = (1 - RTT_ALPHA) * srtt + RTT_ALPHA * sample
    return srtt, rttvar


# ---------------------------------------------------------------------------------------------
# The store


class NodeStore:
    """The node database; use :meth:`open` (or ``with NodeStore.open(path) as store:``)."""

    def __init__(self, db: Database) -> None:
        """Wrap a database that :meth:`open` has configured and migrated."""
        self._db = db

    @property
    def path(self) -> Path:
        """The database file."""
        return self._db.path

    # -- lifecycle -----------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, migrations: Sequence[Migration] = MIGRATIONS) -> NodeStore:
        """Open (creating with mode 0600 if needed) and migrate the database at ``path``.

        Raises :class:`StoreCorrupt` for a file that is not a usable node database and
        :class:`StoreTooNew` for one from a newer AuraLink; neither file is modified.
        """
        return cls(Database.open(Path(path), _KIND, migrations))

    def close(self) -> None:
        """Close the database; later calls raise :class:`LocalProtocolError`. Closing twice is allowed."""
        self._db.close(optimize=True)

    def __enter__(self) -> NodeStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- peers ---------------------------------------------------------------------------------

    def peer_seen(
        self, aura_id: AuraID | str, now: float, *, handle: str | None = None, record: bytes | None = None
    ) -> None:
        """Note that the peer was seen at ``now``; store its handle and signed record if given.

        A ``None`` handle or record keeps the stored one. The caller has already verified the
        record and checked that it supersedes the stored one; the store keeps bytes.
        """
        peer, when = _aura_id(aura_id), _now(now)
        canonical = None if handle is None else parse_handle(handle)
        if record is not None and (not isinstance(record, bytes) or not 0 < len(record) <= RECORD_MAX_SIZE):
            raise LocalProtocolError(f"a node record is 1 to {RECORD_MAX_SIZE} bytes")
        with self._db.write() as db:
            db.execute(
                "INSERT INTO peers (aura_id, handle, first_seen, last_seen, last_record) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (aura_id) DO UPDATE SET "
                "handle = coalesce(excluded.handle, handle), "
                "last_seen = max(last_seen, excluded.last_seen), "
                "last_record = coalesce(excluded.last_record, last_record)",
                (peer, canonical, when, when, record),
            )

    def peer_connected(self, aura_id: AuraID | str, now: float) -> None:
        """Count an established connection with the peer; it was seen at ``now``."""
        peer, when = _aura_id(aura_id), _now(now)
        with self._db.write() as db:
            db.execute(
                "INSERT INTO peers (aura_id, first_seen, last_seen, connects) VALUES (?, ?, ?, 1) "
                "ON CONFLICT (aura_id) DO UPDATE SET connects = connects + 1, "
                "last_seen = max(last_seen, excluded.last_seen)",
                (peer, when, when),
            )

    def peer_failed(self, aura_id: AuraID | str, now: float) -> None:
        """Count a failed connection attempt; ``last_seen`` stays (a failure is not a sighting)."""
        peer, when = _aura_id(aura_id), _now(now)
        with self._db.write() as db:
            db.execute(
                "INSERT INTO peers (aura_id, first_seen, last_seen, failures) VALUES (?, ?, ?, 1) "
                "ON CONFLICT (aura_id) DO UPDATE SET failures = failures + 1",
                (peer, when, when),
            )

    def forget_peer(self, aura_id: AuraID | str) -> bool:
        """Delete the peer with its addresses and path statistics; return whether it was known."""
        peer = _aura_id(aura_id)
        with self._db.write() as db:
            return db.execute("DELETE FROM peers WHERE aura_id = ?", (peer,)).rowcount > 0

    def peers(self) -> list[PeerRow]:
        """Every known peer, most recently seen first."""
        with self._db.read() as db:
            rows = db.execute(f"{_PEER_SELECT} ORDER BY last_seen DESC, aura_id").fetchall()
        return [PeerRow(*row) for row in rows]

    def peer(self, aura_id: AuraID | str) -> PeerRow | None:
        """The peer's row, or ``None`` if it is not known."""
        peer = _aura_id(aura_id)
        with self._db.read() as db:
            row = db.execute(f"{_PEER_SELECT} WHERE aura_id = ?", (peer,)).fetchone()
        return None if row is None else PeerRow(*row)

    # -- addresses -----------------------------------------------------------------------------

    def address_seen(
        self,
        aura_id: AuraID | str,
        address: Address | str,
        source: AddressSource,
        now: float,
        *,
        success: bool | None = None,
    ) -> None:
        """Note that the peer has ``address``, learned from ``source``; count a dial's outcome if given."""
        peer, text, when = _aura_id(aura_id), _address(address), _now(now)
        if source not in ADDRESS_SOURCES:
            raise LocalProtocolError(f"address source {source!r} is not one of {', '.join(ADDRESS_SOURCES)}")
        if success is not None and not isinstance(success, bool):
            raise LocalProtocolError(f"success is True, False or None, not {success!r}")
        successes, failures = int(success is True), int(success is False)
        with self._db.write() as db:
            _ensure_peer(db, peer, when)
            db.execute(
                "INSERT INTO peer_addresses (aura_id, address, source, first_seen, last_seen, successes, failures) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (aura_id, address) DO UPDATE SET source = excluded.source, "
                "last_seen = max(last_seen, excluded.last_seen), "
                "successes = successes + excluded.successes, failures = failures + excluded.failures",
                (peer, text, source, when, when, successes, failures),
            )

    def addresses(self, aura_id: AuraID | str) -> list[AddressRow]:
        """The peer's addresses, most recently seen first."""
        peer = _aura_id(aura_id)
        with self._db.read() as db:
            rows = db.execute(
                "SELECT aura_id, address, source, first_seen, last_seen, successes, failures "
                "FROM peer_addresses WHERE aura_id = ? ORDER BY last_seen DESC, address",
                (peer,),
            ).fetchall()
        return [AddressRow(*row) for row in rows]

    # -- paths ---------------------------------------------------------------------------------

    def record_rtt(self, aura_id: AuraID | str, path: str, rtt_ms: float, now: float) -> None:
        """Fold an RTT sample (milliseconds) into the path's SRTT and RTTVAR (RFC 6298, alpha 1/8, beta 1/4)."""
        peer, name, when = _aura_id(aura_id), _path(path), _now(now)
        if isinstance(rtt_ms, bool) or not isinstance(rtt_ms, int | float) or not math.isfinite(rtt_ms) or rtt_ms < 0:
            raise LocalProtocolError(f"an RTT sample is finite, non-negative milliseconds, not {rtt_ms!r}")
        with self._db.write() as db:
            _ensure_peer(db, peer, when)
            row = db.execute(
                "SELECT rtt_ewma_ms, rtt_var_ms FROM path_stats WHERE aura_id = ? AND path = ?", (peer, name)
            ).fetchone()
            previous: tuple[float | None, float | None] = row or (None, None)
            srtt, rttvar = _rtt_update(previous[0], previous[1], float(rtt_ms))
            db.execute(
                "INSERT INTO path_stats (aura_id, path, samples, rtt_ewma_ms, rtt_var_ms, last_update) "
                "VALUES (?, ?, 1, ?, ?, ?) "
                "ON CONFLICT (aura_id, path) DO UPDATE SET samples = samples + 1, "
                "rtt_ewma_ms = excluded.rtt_ewma_ms, rtt_var_ms = excluded.rtt_var_ms, "
                "last_update = max(last_update, excluded.last_update)",
                (peer, name, srtt, rttvar, when),
            )

    def record_loss(self, aura_id: AuraID | str, path: str, lost: bool, now: float) -> None:
        """Fold one probe's outcome into the path's smoothed loss rate (gain 1/8, starting from 0)."""
        peer, name, when = _aura_id(aura_id), _path(path), _now(now)
        if not isinstance(lost, bool):
            raise LocalProtocolError(f"lost is True or False, not {lost!r}")
        with self._db.write() as db:
            _ensure_peer(db, peer, when)
            db.execute(
                "INSERT INTO path_stats (aura_id, path, loss_samples, loss_ewma, last_update) VALUES (?, ?, 1, ?, ?) "
                "ON CONFLICT (aura_id, path) DO UPDATE SET loss_samples = loss_samples + 1, "
                "loss_ewma = (1 - ?) * loss_ewma + ? * ?, last_update = max(last_update, excluded.last_update)",
                (peer, name, LOSS_ALPHA * lost, when, LOSS_ALPHA, LOSS_ALPHA, float(lost)),
            )

    def path_stats(self, aura_id: AuraID | str) -> list[PathRow]:
        """The statistics of every measured path to the peer, by path name."""
        peer = _aura_id(aura_id)
        with self._db.read() as db:
            rows = db.execute(
                "SELECT aura_id, path, samples, rtt_ewma_ms, rtt_var_ms, loss_samples, loss_ewma, last_update "
                "FROM path_stats WHERE aura_id = ? ORDER BY path",
                (peer,),
            ).fetchall()
        return [PathRow(*row) for row in rows]

    # -- DHT contacts --------------------------------------------------------------------------

    def save_contacts(
        self, contacts: Sequence[tuple[bytes, str, int]], now: float, *, keep: int = MAX_CONTACTS
    ) -> None:
        """Remember DHT contacts ``(node_id, host, port)`` seen at ``now``; keep the ``keep`` most recent."""
        when = _now(now)
        rows = []
        for node_id, host, port in contacts:
            if not isinstance(node_id, bytes) or len(node_id) != DHT_ID_SIZE:
                raise LocalProtocolError(f"a DHT node ID is {DHT_ID_SIZE} bytes")
            rows.append((node_id, *_host_port(host, port), when))
        with self._db.write() as db:
            db.executemany(
                "INSERT INTO dht_contacts (node_id, host, port, last_seen) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (node_id) DO UPDATE SET host = excluded.host, port = excluded.port, "
                "last_seen = max(last_seen, excluded.last_seen)",
                rows,
            )
            db.execute(
                "DELETE FROM dht_contacts WHERE node_id NOT IN "
                "(SELECT node_id FROM dht_contacts ORDER BY last_seen DESC, node_id LIMIT ?)",
                (keep,),
            )

    def contacts(self, limit: int = MAX_CONTACTS) -> list[tuple[bytes, str, int]]:
        """Saved DHT contacts, most recently seen first."""
        with self._db.read() as db:
            rows = db.execute(
                "SELECT node_id, host, port FROM dht_contacts ORDER BY last_seen DESC, node_id LIMIT ?", (limit,)
            ).fetchall()
        return [(bytes(node_id), str(host), int(port)) for node_id, host, port in rows]

    # -- handle pins (trust on first use) --------------------------------------------------------

    def pin(self, handle: str) -> tuple[str, float] | None:
        """The AuraID ``handle`` is pinned to and when it was pinned, or ``None``."""
        with self._db.read() as db:
            row = db.execute("SELECT aura_id, pinned_at FROM handle_pins WHERE handle = ?", (parse_handle(handle),))
            found = row.fetchone()
        return None if found is None else (str(found[0]), float(found[1]))

    def set_pin(self, handle: str, aura_id: AuraID | str, now: float) -> None:
        """Pin ``handle`` to ``aura_id`` (replacing any pin), or note that the pin was seen again."""
        name, peer, when = parse_handle(handle), _aura_id(aura_id), _now(now)
        with self._db.write() as db:
            db.execute(
                "INSERT INTO handle_pins (handle, aura_id, pinned_at, last_seen) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (handle) DO UPDATE SET "
                "pinned_at = CASE WHEN aura_id = excluded.aura_id THEN pinned_at ELSE excluded.pinned_at END, "
                "aura_id = excluded.aura_id, last_seen = max(last_seen, excluded.last_seen)",
                (name, peer, when, when),
            )

    def forget_pin(self, handle: str) -> bool:
        """Drop the pin of ``handle``; return whether there was one."""
        with self._db.write() as db:
            return db.execute("DELETE FROM handle_pins WHERE handle = ?", (parse_handle(handle),)).rowcount > 0

    # -- our own record ---------------------------------------------------------------------------

    def next_record_seq(self, *, first: int) -> int:
        """The sequence number for our next record: the last one handed out plus 1, or ``first``."""
        if isinstance(first, bool) or not isinstance(first, int) or first < 0:
            raise LocalProtocolError(f"a first sequence number is a non-negative int, not {first!r}")
        with self._db.write() as db:
            row = db.execute("SELECT value FROM node_state WHERE key = 'record_seq'").fetchone()
            seq = first if row is None else int(row[0]) + 1
            db.execute(
                "INSERT INTO node_state (key, value) VALUES ('record_seq', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (seq,),
            )
        return seq

    # -- reputation -------------------------------------------------------------------------------

    def load_reputation(self) -> list[ReputationEntry]:
        """Every stored reputation row, for :class:`~auralink_node.reputation.ReputationBook` at start."""
        with self._db.read() as db:
            rows = db.execute(
                "SELECT role, aura_id, positive, negative, strikes, updated_at, banned_until, ban_reason, bans "
                "FROM reputation_scores ORDER BY role, aura_id"
            ).fetchall()
        try:
            return [
                ReputationEntry(Role(role), aura_id, positive, negative, strikes, updated_at, until, reason, bans)
                for role, aura_id, positive, negative, strikes, updated_at, until, reason, bans in rows
            ]
        except (ValueError, AuralinkError) as exc:
            raise self._db.corrupt(f"holds an unreadable reputation row ({exc})") from exc

    def save_reputation(self, changed: Sequence[ReputationEntry], removed: Sequence[tuple[Role, str]] = ()) -> None:
        """Store the rows ``ReputationBook.take_changes`` returned, in one transaction."""
        rows = []
        for entry in changed:
            if not isinstance(entry, ReputationEntry):
                raise LocalProtocolError(f"changed holds ReputationEntry rows, not {type(entry).__name__}")
            rows.append(
                (
                    entry.role.value,
                    entry.aura_id,
                    entry.positive,
                    entry.negative,
                    entry.strikes,
                    entry.updated_at,
                    entry.banned_until,
                    entry.ban_reason,
                    entry.bans,
                )
            )
        gone = []
        for role, aura_id in removed:
            if not isinstance(role, Role):
                raise LocalProtocolError(f"removed holds (Role, AuraID) pairs, not {role!r}")
            gone.append((role.value, _aura_id(aura_id)))
        with self._db.write() as db:
            db.executemany(
                "INSERT INTO reputation_scores (role, aura_id, positive, negative, strikes, updated_at, "
                "banned_until, ban_reason, bans) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (role, aura_id) DO UPDATE SET positive = excluded.positive, "
                "negative = excluded.negative, strikes = excluded.strikes, updated_at = excluded.updated_at, "
                "banned_until = excluded.banned_until, ban_reason = excluded.ban_reason, bans = excluded.bans",
                rows,
            )
            db.executemany("DELETE FROM reputation_scores WHERE role = ? AND aura_id = ?", gone)


_PEER_SELECT = "SELECT aura_id, handle, first_seen, last_seen, last_record, connects, failures FROM peers"


def _ensure_peer(db: sqlite3.Connection, peer: str, now: float) -> None:
    """Create the peer's row if needed (addresses and paths hang off it), without marking it seen."""
    db.execute("INSERT OR IGNORE INTO peers (aura_id, first_seen, last_seen) VALUES (?, ?, ?)", (peer, now, now))
