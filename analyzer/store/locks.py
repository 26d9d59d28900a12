"""The store's advisory locks, each defined once.

- The per-target lock (session level, class ``"par"``): an audit and a snapshot job of one
  target take turns, whatever the process or replica; it goes away with a dead session.
- The snapshot write lock (transaction level): writers of one target's snapshots take turns
  while they read what the previous snapshot was (analyzer/store/writer.py).
- The re-embedding lock (transaction level): one process re-embeds a set of stored vectors
  when the embedder changed, and syncs the shipped ask knowledge (analyzer/embedspace.py).
"""

from __future__ import annotations

import zlib

from analyzer.store.connection import Conn

TARGET_LOCK_CLASS = 0x70676172  # "par"
TARGET_WRITE_LOCK = 0x7067_0004
REEMBED_LOCK = int.from_bytes(b"pgaembed", "big") & 0x7FFF_FFFF_FFFF_FFFF  # "pgaembed"


def target_lock_key(target: str) -> int:
    """The per-target lock's second key (int4): the target name's CRC-32, shifted."""
    return zlib.crc32(target.encode()) - 2**31


def try_lock_target(conn: Conn, target: str) -> bool:
    """Take the per-target lock on `conn` unless another session holds it; True if taken."""
    row = conn.execute("/* pgarchitect */ SELECT pg_try_advisory_lock(%s, %s)",
                       (TARGET_LOCK_CLASS, target_lock_key(target))).fetchone()
    return bool(row and row[0])


def unlock_target(conn: Conn, target: str) -> None:
    """Give the per-target lock back (taken with `try_lock_target` on the same session)."""
    conn.execute("/* pgarchitect */ SELECT pg_advisory_unlock(%s, %s)",
                 (TARGET_LOCK_CLASS, target_lock_key(target)))


def lock_target_writes(conn: Conn, target: str) -> None:
    """Wait for the snapshot write lock of `target` (released when the transaction ends)."""
    conn.execute("/* pgarchitect */ SELECT pg_advisory_xact_lock(%s::int4, hashtext(%s))",
                 (TARGET_WRITE_LOCK, target))


def lock_reembedding(conn: Conn) -> None:
    """Wait for the re-embedding lock (released when the transaction ends)."""
    conn.execute("/* pgarchitect */ SELECT pg_advisory_xact_lock(%s)", (REEMBED_LOCK,))
