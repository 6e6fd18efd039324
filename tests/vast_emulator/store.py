"""Catalog and rows of the emulated cluster, with snapshot transactions.

Model: the committed state is an immutable ``dict[Key, Entry]`` replaced wholesale at every
commit. A transaction keeps a reference to the state it began on (its snapshot; no version
history is needed, the garbage collector drops states nobody holds) plus an overlay of its own
writes. Reads see overlay-then-snapshot. At commit, first-committer-wins: if any key the
transaction wrote was committed by someone else after it began, the commit fails with a
conflict. Keys are whole schemas and whole tables, so two transactions writing the same table
always conflict (VAST's real granularity is not documented; whole tables is the strict end).
Conflicts surface at commit only; VAST may also refuse some DDL earlier (its SDK's tests show
a 409 on a concurrent rename_column).

Rows of a table live in one ``pa.Table`` whose first column is ``$row_id`` (uint64), kept sorted
by row id. Row ids come from a per-table counter that never goes back, also across rollbacks,
so ids stay unique between concurrent transactions like on a real cluster.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

ROW_ID = "$row_id"
ROW_ID_FIELD = pa.field(ROW_ID, pa.uint64())

#: The S3 error code of a first-committer-wins failure. The SDK has no constant for it and the
#: real code string is not public; tests should match the 409 status (``vastdb.errors.Conflict``).
TRANSACTION_CONFLICT = "TransactionConflict"

Key = tuple[str, ...]  # ("schema", bucket, path) or ("table", bucket, schema_path, name)


class EmulatorError(Exception):
    """A failure the server turns into an S3 XML error reply."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def bad_request(message: str) -> EmulatorError:
    return EmulatorError(400, "BadRequest", message)


@dataclass(frozen=True)
class SchemaEntry:
    handle: int


@dataclass(frozen=True)
class TableEntry:
    handle: int
    schema: pa.Schema  # as created (plus added columns); never holds $row_id
    data: pa.Table  # $row_id + the schema's columns, sorted by $row_id

    @property
    def num_rows(self) -> int:
        return int(self.data.num_rows)

    @property
    def size_in_bytes(self) -> int:
        return int(self.data.nbytes)


Entry = SchemaEntry | TableEntry


def schema_key(bucket: str, path: str) -> Key:
    return ("schema", bucket, path)


def table_key(bucket: str, schema: str, name: str) -> Key:
    return ("table", bucket, schema, name)


def empty_data(schema: pa.Schema) -> pa.Table:
    return pa.schema([ROW_ID_FIELD, *schema]).empty_table()


@dataclass
class Transaction:
    txid: int
    begin_seq: int
    snapshot: dict[Key, Entry]
    overlay: dict[Key, Entry | None] = field(default_factory=dict)

    def get(self, key: Key) -> Entry | None:
        return self.overlay[key] if key in self.overlay else self.snapshot.get(key)

    def items(self) -> Iterator[tuple[Key, Entry]]:
        for key, entry in self.snapshot.items():
            if key not in self.overlay:
                yield key, entry
        for key, maybe in self.overlay.items():
            if maybe is not None:
                yield key, maybe

    def put(self, key: Key, entry: Entry | None) -> None:
        self.overlay[key] = entry


class Store:
    """Everything the emulated cluster holds. All methods are thread-safe (one lock)."""

    def __init__(self, buckets: set[str], *, keep_timezones: bool = True) -> None:
        self.buckets = set(buckets)
        self.keep_timezones = keep_timezones  # False emulates clusters before 5.4
        self.lock = threading.RLock()
        self._state: dict[Key, Entry] = {}
        self._write_seq: dict[Key, int] = {}  # key -> commit seq that last wrote it
        self._seq = 0
        self._txs: dict[int, Transaction] = {}
        self._txids = itertools.count(0x1000_0000_0001)
        self._handles = itertools.count(1000)
        self._next_row_id: dict[int, int] = {}  # table handle -> next row id

    # ------------------------------------------------------------------ transactions

    def begin(self) -> int:
        with self.lock:
            tx = Transaction(next(self._txids), self._seq, self._state)
            self._txs[tx.txid] = tx
            return tx.txid

    def tx(self, txid: int) -> Transaction:
        with self.lock:
            try:
                return self._txs[txid]
            except KeyError:
                # Code chosen here: VAST's string for an unknown/finished transaction is unknown.
                raise EmulatorError(404, "NoSuchTransaction", f"txid {txid} not active") from None

    def commit(self, txid: int) -> None:
        with self.lock:
            tx = self.tx(txid)
            del self._txs[txid]  # committed or aborted: either way it is over
            for key in tx.overlay:
                if self._write_seq.get(key, 0) > tx.begin_seq:
                    raise EmulatorError(
                        409, TRANSACTION_CONFLICT,
                        f"transaction {txid:#x} conflicts on {'/'.join(key[1:])}: "
                        "committed by another transaction after this one began",
                    )  # fmt: skip
            if not tx.overlay:
                return
            self._seq += 1
            state = dict(self._state)
            for key, maybe in tx.overlay.items():
                self._write_seq[key] = self._seq
                if maybe is None:
                    state.pop(key, None)
                else:
                    state[key] = maybe
            self._state = state

    def rollback(self, txid: int) -> None:
        with self.lock:
            self.tx(txid)
            del self._txs[txid]

    def run(self, txid: int, fn: Callable[[Transaction], Any]) -> Any:
        """Run ``fn`` in transaction ``txid``; 0 means an implicit single-request one."""
        with self.lock:
            if txid:
                return fn(self.tx(txid))
            implicit = self.begin()
            try:
                result = fn(self._txs[implicit])
            except BaseException:
                self.rollback(implicit)
                raise
            self.commit(implicit)
            return result

    def active_transactions(self) -> int:
        with self.lock:
            return len(self._txs)

    # ------------------------------------------------------------------ catalog

    def check_bucket(self, bucket: str) -> None:
        if bucket not in self.buckets:
            raise EmulatorError(404, "NoSuchBucket", f"bucket {bucket!r} does not exist")

    def _check_schema(self, tx: Transaction, bucket: str, path: str) -> None:
        self.check_bucket(bucket)
        if path and not isinstance(tx.get(schema_key(bucket, path)), SchemaEntry):
            raise EmulatorError(404, "NoSuchSchema", f"schema {bucket}/{path} does not exist")

    def list_schemas(self, tx: Transaction, bucket: str, parent: str) -> list[tuple[str, int]]:
        """Direct children of ``parent`` ('' = bucket root): (name, handle), sorted."""
        self._check_schema(tx, bucket, parent)
        prefix = f"{parent}/" if parent else ""
        found = []
        for key, entry in tx.items():
            if key[0] == "schema" and key[1] == bucket and key[2].startswith(prefix):
                rest = key[2][len(prefix) :]
                if rest and "/" not in rest:
                    assert isinstance(entry, SchemaEntry)
                    found.append((rest, entry.handle))
        return sorted(found)

    def create_schema(self, tx: Transaction, bucket: str, path: str) -> None:
        parent = path.rpartition("/")[0]
        self._check_schema(tx, bucket, parent)
        key = schema_key(bucket, path)
        if tx.get(key) is not None:
            raise EmulatorError(409, "SchemaAlreadyExists", f"schema {bucket}/{path} exists")
        tx.put(key, SchemaEntry(next(self._handles)))

    def drop_schema(self, tx: Transaction, bucket: str, path: str) -> None:
        self._check_schema(tx, bucket, path)
        inside = any(
            k[1] == bucket and k != schema_key(bucket, path)
            and (k[2] == path or k[2].startswith(f"{path}/"))
            for k, _ in tx.items()
        )  # fmt: skip
        if inside:  # VAST answers 409 here too (see the SDK's own tests)
            raise EmulatorError(409, "SchemaNotEmpty", f"schema {bucket}/{path} is not empty")
        tx.put(schema_key(bucket, path), None)

    def list_tables(
        self, tx: Transaction, bucket: str, schema: str
    ) -> list[tuple[str, TableEntry]]:
        self._check_schema(tx, bucket, schema)
        return sorted(
            (key[3], entry) for key, entry in tx.items()
            if key[0] == "table" and key[1] == bucket and key[2] == schema
            and isinstance(entry, TableEntry)
        )  # fmt: skip

    def table(self, tx: Transaction, bucket: str, schema: str, name: str) -> TableEntry:
        self._check_schema(tx, bucket, schema)
        entry = tx.get(table_key(bucket, schema, name))
        if not isinstance(entry, TableEntry):
            raise EmulatorError(404, "NoSuchTable", f"table {bucket}/{schema}/{name} not found")
        return entry

    def create_table(
        self, tx: Transaction, bucket: str, schema: str, name: str, columns: pa.Schema
    ) -> None:
        self._check_schema(tx, bucket, schema)
        key = table_key(bucket, schema, name)
        if tx.get(key) is not None:
            raise EmulatorError(409, "TableAlreadyExists", f"table {bucket}/{schema}/{name} exists")
        if ROW_ID in columns.names or len(set(columns.names)) != len(columns.names):
            raise bad_request(f"invalid column names {columns.names}")
        if not self.keep_timezones:  # clusters before 5.4 dropped the zone of timestamps
            columns = pa.schema(
                [f.with_type(pa.timestamp(f.type.unit)) if pa.types.is_timestamp(f.type) else f
                 for f in columns], metadata=columns.metadata,
            )  # fmt: skip
        handle = next(self._handles)
        self._next_row_id[handle] = 0
        tx.put(key, TableEntry(handle, columns, empty_data(columns)))

    def drop_table(self, tx: Transaction, bucket: str, schema: str, name: str) -> None:
        self.table(tx, bucket, schema, name)
        tx.put(table_key(bucket, schema, name), None)

    def alter_columns(
        self, tx: Transaction, bucket: str, schema: str, name: str, columns: pa.Schema, add: bool
    ) -> None:
        """Add (filled with nulls) or drop the given columns."""
        entry = self.table(tx, bucket, schema, name)
        data, fields = entry.data, list(entry.schema)
        for f in columns:
            exists = f.name in entry.schema.names
            if add == exists or f.name == ROW_ID:
                raise bad_request(f"cannot {'add' if add else 'drop'} column {f.name!r}")
            if add:
                fields.append(f)
                data = data.append_column(f, pa.nulls(data.num_rows, f.type))
            else:
                fields = [g for g in fields if g.name != f.name]
                data = data.drop_columns([f.name])
        new_schema = pa.schema(fields, metadata=entry.schema.metadata)
        tx.put(table_key(bucket, schema, name), replace(entry, schema=new_schema, data=data))

    # ------------------------------------------------------------------ rows

    def insert(
        self, tx: Transaction, bucket: str, schema: str, name: str, batch: pa.Table
    ) -> pa.Array:
        entry = self.table(tx, bucket, schema, name)
        _check_names(batch, entry.schema)
        start = self._next_row_id[entry.handle]
        self._next_row_id[entry.handle] = start + batch.num_rows
        ids = pa.array(range(start, start + batch.num_rows), pa.uint64())
        columns = [ids]
        for f in entry.schema:  # columns left out of the insert are null (by-column inserts)
            columns.append(_column(batch, f) if f.name in batch.column_names
                           else pa.nulls(batch.num_rows, f.type))  # fmt: skip
        new = pa.Table.from_arrays(columns, schema=entry.data.schema)
        data = pa.concat_tables([entry.data, new]).combine_chunks()
        tx.put(table_key(bucket, schema, name), replace(entry, data=data))
        return ids

    def update(self, tx: Transaction, bucket: str, schema: str, name: str, batch: pa.Table) -> None:
        entry = self.table(tx, bucket, schema, name)
        _check_names(batch, entry.schema)
        batch = batch.sort_by(ROW_ID)
        changed_mask = self._match_ids(entry, batch)
        changed = entry.data.filter(changed_mask)  # same order as `batch`: both sorted, unique
        for f in entry.schema:
            if f.name in batch.column_names:
                i = changed.schema.get_field_index(f.name)
                changed = changed.set_column(i, f, _column(batch, f))
        kept = entry.data.filter(pc.invert(changed_mask))
        data = pa.concat_tables([kept, changed]).sort_by(ROW_ID).combine_chunks()
        tx.put(table_key(bucket, schema, name), replace(entry, data=data))

    def delete(self, tx: Transaction, bucket: str, schema: str, name: str, batch: pa.Table) -> None:
        entry = self.table(tx, bucket, schema, name)
        data = entry.data.filter(pc.invert(self._match_ids(entry, batch)))
        tx.put(table_key(bucket, schema, name), replace(entry, data=data))

    @staticmethod
    def _match_ids(entry: TableEntry, batch: pa.Table) -> pa.Array:
        """Mask of the table's rows named by ``batch[$row_id]``; every id must exist once."""
        if ROW_ID not in batch.column_names:
            raise bad_request(f"{ROW_ID} column is required")
        wanted = batch[ROW_ID].combine_chunks().cast(pa.uint64())
        if pc.count_distinct(wanted).as_py() != len(wanted):
            raise bad_request(f"duplicate {ROW_ID} values")
        existing = entry.data[ROW_ID].combine_chunks()
        missing = pc.filter(wanted, pc.invert(pc.is_in(wanted, value_set=existing)))
        if len(missing):
            raise bad_request(f"{ROW_ID} values not found: {missing.to_pylist()[:10]}")
        return pc.is_in(existing, value_set=wanted)


def _check_names(batch: pa.Table, schema: pa.Schema) -> None:
    unknown = set(batch.column_names) - set(schema.names) - {ROW_ID}
    if unknown:
        raise bad_request(f"unknown columns: {sorted(unknown)}")


def _column(batch: pa.Table, f: pa.Field) -> pa.Array:
    arr = batch[f.name].combine_chunks()
    if arr.type == f.type:
        return arr
    try:
        return arr.cast(f.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise bad_request(f"column {f.name!r}: cannot store {arr.type} as {f.type}") from exc
