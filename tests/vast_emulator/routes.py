"""The tabular API: one HTTP request in, one reply out (status, headers, body).

Paths are ``/{bucket}/{schema...}/{table}?{command}``; the first query item is the command.
Only the subset ``vastdb`` 2.1 uses for schemas, tables, columns, stats, rows and QueryData
is emulated; anything else is 501 NotImplemented (``vastdb.errors.NotImplemented``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

import pyarrow as pa

from . import query, wire
from .faults import RowPredicate
from .store import ROW_ID, EmulatorError, Store, Transaction, bad_request


@dataclass(frozen=True)
class Request:
    method: str
    parts: list[str]  # unquoted path segments
    command: str  # "" when the query string has none (HEAD bucket)
    headers: Message[str, str]  # http.client.HTTPMessage: case-insensitive names
    body: bytes

    @property
    def txid(self) -> int:
        return int(self.headers.get("tabular-txid") or 0)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


_EMPTY_METADATA_FILL = {"VAST:emulator": "metadata was empty"}


class Router:
    def __init__(self, store: Store, version: tuple[int, ...], vips: Sequence[str],
                 reject: Callable[[], RowPredicate | None]) -> None:  # fmt: skip
        self.store = store
        self.version = version
        self.vips = list(vips)
        self._reject = reject
        self._routes: dict[tuple[str, str], Callable[[Request, Transaction], Reply]] = {
            ("GET", "schema"): self._list_schemas,
            ("POST", "schema"): self._create_schema,
            ("DELETE", "schema"): self._drop_schema,
            ("GET", "table"): self._list_tables,
            ("POST", "table"): self._create_table,
            ("DELETE", "table"): self._drop_table,
            ("GET", "column"): self._list_columns,
            ("POST", "column"): self._add_columns,
            ("DELETE", "column"): self._drop_columns,
            ("GET", "sorted-columns"): self._sorted_columns,
            ("GET", "stats"): self._stats,
            ("POST", "rows"): self._insert,
            ("PUT", "rows"): self._update,
            ("DELETE", "rows"): self._delete,
            ("GET", "data"): self._query,
        }

    def handle(self, req: Request) -> Reply:
        if not req.parts:
            if req.command != "transaction":
                raise bad_request(f"unsupported request {req.method} /?{req.command}")
            return self._transaction(req)
        self.store.check_bucket(req.parts[0])
        if req.method == "HEAD" and len(req.parts) == 1 and not req.command:
            return Reply()
        route = self._routes.get((req.method, req.command))
        if route is None:
            raise EmulatorError(501, "NotImplemented",
                                f"{req.method} ?{req.command} is not emulated")  # fmt: skip
        return self.store.run(req.txid, lambda tx: route(req, tx))  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ transactions

    def _transaction(self, req: Request) -> Reply:
        if req.method == "GET":
            if req.headers.get("tabular-get-vast-version"):
                return Reply()  # the version travels in the Server header of every reply
            self.store.tx(req.txid)
            return Reply()
        if req.method == "POST":
            return Reply(headers={"tabular-txid": str(self.store.begin())})
        if req.method == "PUT":
            self.store.commit(req.txid)
            return Reply()
        if req.method == "DELETE":
            self.store.rollback(req.txid)
            return Reply()
        raise bad_request(f"unsupported transaction method {req.method}")

    # ------------------------------------------------------------------ catalog

    @staticmethod
    def _split_table(req: Request) -> tuple[str, str, str]:
        if len(req.parts) < 3:
            raise bad_request(f"?{req.command} needs /bucket/schema/table")
        return req.parts[0], "/".join(req.parts[1:-1]), req.parts[-1]

    @staticmethod
    def _listing(req: Request, items: list[wire.ObjectInfo]) -> tuple[list[wire.ObjectInfo],
                                                                       dict[str, str]]:  # fmt: skip
        """Filter and page a listing the way the tabular-* list headers ask."""
        h = req.headers
        if "tabular-name-exact-match" in h:
            items = [i for i in items if i.name == h["tabular-name-exact-match"]]
        else:
            items = [i for i in items if i.name.startswith(h.get("tabular-name-prefix", ""))]
        start = int(h.get("tabular-next-key") or 0)
        max_keys = int(h.get("tabular-max-keys") or 1000)
        page = items[start : start + max_keys]
        count_only = h.get("tabular-list-count-only", "").lower() == "true"
        headers = {
            "tabular-next-key": str(start + len(page)),
            "tabular-is-truncated": "true" if start + len(page) < len(items) else "false",
            "tabular-list-count": str(len(items) if count_only else len(page)),
        }
        return ([] if count_only else page), headers

    def _list_schemas(self, req: Request, tx: Transaction) -> Reply:
        bucket, parent = req.parts[0], "/".join(req.parts[1:])
        found = [wire.ObjectInfo(n, h) for n, h in self.store.list_schemas(tx, bucket, parent)]
        page, headers = self._listing(req, found)
        return Reply(body=wire.list_schemas_reply(bucket, page), headers=headers)

    def _create_schema(self, req: Request, tx: Transaction) -> Reply:
        self.store.create_schema(tx, req.parts[0], "/".join(req.parts[1:]))
        return Reply()

    def _drop_schema(self, req: Request, tx: Transaction) -> Reply:
        self.store.drop_schema(tx, req.parts[0], "/".join(req.parts[1:]))
        return Reply()

    def _list_tables(self, req: Request, tx: Transaction) -> Reply:
        bucket, schema = req.parts[0], "/".join(req.parts[1:])
        found = [wire.ObjectInfo(name, t.handle, t.num_rows, t.size_in_bytes)
                 for name, t in self.store.list_tables(tx, bucket, schema)]  # fmt: skip
        page, headers = self._listing(req, found)
        return Reply(body=wire.list_tables_reply(bucket, schema, page), headers=headers)

    def _create_table(self, req: Request, tx: Transaction) -> Reply:
        bucket, schema, name = self._split_table(req)
        self.store.create_table(tx, bucket, schema, name, wire.read_ipc_schema(req.body))
        return Reply()

    def _drop_table(self, req: Request, tx: Transaction) -> Reply:
        self.store.drop_table(tx, *self._split_table(req))
        return Reply()

    def _list_columns(self, req: Request, tx: Transaction) -> Reply:
        schema = self.store.table(tx, *self._split_table(req)).schema
        if self.version >= (5, 5):
            # 2.1 reads field and schema metadata unconditionally from 5.5 on; a real cluster
            # always has some, so fill in what the creator left empty.
            schema = pa.schema(
                [f if f.metadata else f.with_metadata(_EMPTY_METADATA_FILL) for f in schema],
                metadata=schema.metadata or _EMPTY_METADATA_FILL,
            )
        headers = {"tabular-next-key": "0", "tabular-is-truncated": "false",
                   "tabular-list-count": str(len(schema))}  # fmt: skip
        return Reply(body=wire.ipc_stream(schema), headers=headers)

    def _sorted_columns(self, req: Request, tx: Transaction) -> Reply:
        self.store.table(tx, *self._split_table(req))
        # What a pre-5.5 cluster answers for a table without a sorting key (the SDK's own
        # tests expect it, and TableMetadata silences exactly this BadRequest).
        raise bad_request("Listing sorted columns without elysium enabled")

    def _add_columns(self, req: Request, tx: Transaction) -> Reply:
        schema = wire.read_ipc_schema(req.body)
        self.store.alter_columns(tx, *self._split_table(req), schema, add=True)
        return Reply()

    def _drop_columns(self, req: Request, tx: Transaction) -> Reply:
        schema = wire.read_ipc_schema(req.body)
        self.store.alter_columns(tx, *self._split_table(req), schema, add=False)
        return Reply()

    def _stats(self, req: Request, tx: Transaction) -> Reply:
        t = self.store.table(tx, *self._split_table(req))
        return Reply(body=wire.table_stats_reply(t.num_rows, t.size_in_bytes, self.vips))

    # ------------------------------------------------------------------ rows

    def _insert(self, req: Request, tx: Transaction) -> Reply:
        batch = wire.read_ipc(req.body)
        predicate = self._reject()
        if predicate is not None:
            for i, row in enumerate(batch.to_pylist()):
                if predicate(row):
                    raise bad_request(f"row {i} of the insert was rejected: {_describe(row)}")
        ids = self.store.insert(tx, *self._split_table(req), batch)
        return Reply(body=wire.ipc_stream(pa.table({ROW_ID: ids})))

    def _update(self, req: Request, tx: Transaction) -> Reply:
        self.store.update(tx, *self._split_table(req), wire.read_ipc(req.body))
        return Reply()

    def _delete(self, req: Request, tx: Transaction) -> Reply:
        self.store.delete(tx, *self._split_table(req), wire.read_ipc(req.body))
        return Reply()

    def _query(self, req: Request, tx: Transaction) -> Reply:
        table = self.store.table(tx, *self._split_table(req))
        request = query.parse_query(req.body)
        known = {*table.schema.names, ROW_ID}
        if unknown := [n for n in request.names if n not in known]:
            raise bad_request(f"unknown columns in query: {unknown}")
        if int(req.headers.get("tabular-schedule-id") or 0) < 0:
            raise bad_request("invalid tabular-schedule-id")
        rows = table.data.filter(query.evaluate(request.filter, table.data, request.names))
        chunks = query.page(rows, request, _split_request(req.headers), table.schema)
        return Reply(body=wire.query_reply(chunks))


def _split_request(h: Message[str, str]) -> query.SplitRequest:
    try:
        split_id, num_splits, row_groups = (
            int(v) for v in h.get("tabular-split", "0,1,8").split(",")
        )
        num_sub_splits = int(h.get("tabular-num-of-subsplits") or 1)
        starts = {}
        for sub in range(num_sub_splits):
            if value := h.get(f"tabular-start-row-id-{sub}"):
                sub_id, start = value.split(",")
                starts[int(sub_id)] = int(start)
        limit = int(h.get("tabular-limit-rows") or 0)
    except ValueError as exc:
        raise bad_request(f"invalid QueryData paging headers: {exc}") from exc
    if not 0 <= split_id < num_splits or num_sub_splits < 1:
        raise bad_request(f"invalid split {split_id}/{num_splits} x {num_sub_splits}")
    return query.SplitRequest(split_id, num_splits, row_groups, num_sub_splits, starts, limit)


def _describe(row: Mapping[str, Any]) -> str:
    """A short identification of a row for error messages (its first text columns)."""
    shown = [f"{k}={v!r}" for k, v in row.items() if isinstance(v, str)][:2]
    return ", ".join(shown) or repr(row)[:200]
