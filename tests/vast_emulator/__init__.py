"""A loopback stand-in for a VAST cluster, so that tests exercise the REAL ``vastdb`` SDK.

It speaks the subset of the tabular HTTP API that ``vastdb`` 2.1 uses (see
../shared/docs/vastdb-facts.md, "Wire protocol"): version handshake, transactions with
snapshot isolation and first-committer-wins conflicts, schemas, tables, columns, stats,
inserts/updates/deletes by ``$row_id`` and QueryData with predicate pushdown and paging.
Test support only: one process, state in memory, no durability.

Modules: ``server`` (HTTP, SigV4 check, lifecycle, faults API), ``routes`` (one request to one
reply), ``store`` (catalog, rows, transactions), ``query`` (computeir decoding, filtering,
paging), ``wire`` (S3 XML, flatbuffers, Arrow IPC framing), ``faults`` (armed faults).
"""

from .server import DEFAULT_VERSION, VastEmulator
from .store import ROW_ID, TRANSACTION_CONFLICT, EmulatorError

__all__ = ["DEFAULT_VERSION", "ROW_ID", "TRANSACTION_CONFLICT", "EmulatorError", "VastEmulator"]
