"""QueryData: decode the SDK's computeir request, filter with pyarrow.compute, page the result.

The request (built by ``vastdb._internal.build_query_data_request``) is a ``Relation`` holding
a ``Source`` with: the schema of the queried columns (projection plus predicate-only columns),
a filter ``and(or(cmp, ...), ...)`` whose field references are node positions in that schema
counted depth first (a fixed-size list column is two nodes: the list, then its item), and a
projection of leaf positions. Columns are matched to the stored table by name.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from vastdb.vast_flatbuf.org.apache.arrow.computeir.flatbuf import (
    Call as FbCall,
)
from vastdb.vast_flatbuf.org.apache.arrow.computeir.flatbuf import (
    FieldIndex as FbFieldIndex,
)
from vastdb.vast_flatbuf.org.apache.arrow.computeir.flatbuf import (
    FieldRef as FbFieldRef,
)
from vastdb.vast_flatbuf.org.apache.arrow.computeir.flatbuf import (
    Literal as FbLiteral,
)
from vastdb.vast_flatbuf.org.apache.arrow.computeir.flatbuf import (
    Relation as FbRelation,
)
from vastdb.vast_flatbuf.org.apache.arrow.computeir.flatbuf import (
    Source as FbSource,
)
from vastdb.vast_flatbuf.org.apache.arrow.computeir.flatbuf.Deref import Deref
from vastdb.vast_flatbuf.org.apache.arrow.computeir.flatbuf.ExpressionImpl import ExpressionImpl
from vastdb.vast_flatbuf.org.apache.arrow.computeir.flatbuf.LiteralImpl import LiteralImpl
from vastdb.vast_flatbuf.org.apache.arrow.computeir.flatbuf.RelationImpl import RelationImpl

from .store import ROW_ID, ROW_ID_FIELD, bad_request
from .wire import SUBSPLIT_DONE_ROW_ID, SubSplitChunk

ROWS_PER_ROW_GROUP = 1 << 16  # VAST's row group; sub-splits own whole groups of these


@dataclass(frozen=True)
class Col:
    index: int  # top-level field of the request schema
    nested: bool  # the reference points inside the column (e.g. a vector's items)


@dataclass(frozen=True)
class Lit:
    value: Any  # int, float, bool or bytes (string and binary literals)


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Col | Lit | Call, ...]


Node = Col | Lit | Call


@dataclass(frozen=True)
class QueryRequest:
    names: list[str]  # top-level fields of the request schema
    projection: list[str]  # the columns to return, in order
    filter: Node | None


# ---------------------------------------------------------------------- decoding


def _init(cls: type, table: Any) -> Any:
    obj = cls()
    obj.Init(table.Bytes, table.Pos)
    return obj


def parse_query(body: bytes) -> QueryRequest:
    try:
        relation = FbRelation.Relation.GetRootAs(body, 0)
        if relation.ImplType() != RelationImpl.Source:
            raise bad_request(f"unsupported relation type {relation.ImplType()}")
        source = _init(FbSource.Source, relation.Impl())
        schema = source.Schema()
        names: list[str] = []
        owner: list[tuple[int, bool]] = []  # node position -> (top-level index, is nested)

        def walk(fb_field: Any, top: int, nested: bool) -> None:
            owner.append((top, nested))
            for j in range(fb_field.ChildrenLength()):
                walk(fb_field.Children(j), top, True)

        for i in range(schema.FieldsLength()):
            fb_field = schema.Fields(i)
            names.append(fb_field.Name().decode())
            walk(fb_field, i, False)
        projection: list[str] = []
        for j in range(source.ProjectionLength()):
            name = names[owner[source.Projection(j).Position()][0]]
            if name not in projection:  # a nested column projects each of its leaves
                projection.append(name)
        fb_filter = source.Filter()
        node = None if fb_filter is None else _expression(fb_filter, owner)
        return QueryRequest(names, projection, node)
    except (IndexError, AttributeError, UnicodeDecodeError) as exc:
        raise bad_request(f"malformed QueryData request: {exc!r}") from exc


def _expression(expr: Any, owner: list[tuple[int, bool]]) -> Node:
    kind = expr.ImplType()
    if kind == ExpressionImpl.Call:
        call = _init(FbCall.Call, expr.Impl())
        args = tuple(_expression(call.Arguments(j), owner) for j in range(call.ArgumentsLength()))
        return Call(call.Name().decode(), args)
    if kind == ExpressionImpl.FieldRef:
        ref = _init(FbFieldRef.FieldRef, expr.Impl())
        if ref.RefType() != Deref.FieldIndex:
            raise bad_request(f"unsupported field reference type {ref.RefType()}")
        top, nested = owner[_init(FbFieldIndex.FieldIndex, ref.Ref()).Position()]
        return Col(top, nested)
    if kind == ExpressionImpl.Literal:
        return Lit(_literal_value(_init(FbLiteral.Literal, expr.Impl())))
    raise bad_request(f"unsupported expression type {kind}")


_LITERAL_NAMES = {v: k for k, v in vars(LiteralImpl).items() if isinstance(v, int)}
_SCALAR_LITERALS = {  # every one of these is a table with a single scalar `value`
    "BooleanLiteral", "Int8Literal", "Int16Literal", "Int32Literal", "Int64Literal",
    "UInt8Literal", "UInt16Literal", "UInt32Literal", "UInt64Literal", "DateLiteral",
    "TimeLiteral", "TimestampLiteral", "Float32Literal", "Float64Literal", "StringLiteral",
}  # fmt: skip


@functools.cache
def _literal_class(name: str) -> type:
    module = importlib.import_module(
        f"vastdb.vast_flatbuf.org.apache.arrow.computeir.flatbuf.{name}"
    )
    return getattr(module, name)  # type: ignore[no-any-return]


def _literal_value(literal: Any) -> Any:
    name = _LITERAL_NAMES.get(literal.ImplType(), "?")
    impl = literal.Impl()
    if impl is None:
        return None
    if name in _SCALAR_LITERALS:
        return _init(_literal_class(name), impl).Value()  # StringLiteral gives UTF-8 bytes
    if name == "BinaryLiteral":
        obj = _init(_literal_class(name), impl)
        return obj.ValueAsNumpy().tobytes() if obj.ValueLength() else b""
    raise bad_request(f"unsupported literal {name} (decimal, list, half float... not emulated)")


# ---------------------------------------------------------------------- evaluation


def evaluate(node: Node | None, table: pa.Table, names: list[str]) -> pa.Array:
    """The rows of ``table`` the filter keeps, as a null-free boolean mask."""
    if node is None:
        return pa.array(np.ones(table.num_rows, dtype=bool))
    result = _eval(node, table, names)
    if isinstance(result, pa.ChunkedArray):
        result = result.combine_chunks()
    return pc.fill_null(result, False)


def _column(node: Node, table: pa.Table, names: list[str]) -> pa.ChunkedArray:
    if not isinstance(node, Col):
        raise bad_request(f"expected a column reference, got {node}")
    name = names[node.index]
    if node.nested or name not in table.column_names or name == ROW_ID:
        raise bad_request(f"predicates on column {name!r} are not supported")
    return table[name]


def _comparable(column: pa.ChunkedArray, value: Any) -> tuple[Any, Any]:
    """Column and literal in a domain where pyarrow compares them like VAST does."""
    t = column.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        # String literals arrive as bytes; starts_with's upper bound may not even be valid
        # UTF-8, so compare bytes (UTF-8 byte order is code point order).
        return column.cast(pa.binary()), pa.scalar(value, pa.binary())
    if pa.types.is_timestamp(t) or pa.types.is_time64(t) or pa.types.is_date64(t):
        return column.cast(pa.int64()), pa.scalar(value, pa.int64())
    if pa.types.is_date32(t) or pa.types.is_time32(t):
        return column.cast(pa.int32()), pa.scalar(value, pa.int32())
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        return column, pa.scalar(value, t)
    if pa.types.is_binary(t):
        return column, pa.scalar(value, pa.binary())
    raise bad_request(f"comparisons on {t} columns are not emulated")


_COMPARISONS = {"equal", "not_equal", "less", "less_equal", "greater", "greater_equal"}


def _eval(node: Node, table: pa.Table, names: list[str]) -> Any:
    if not isinstance(node, Call):
        raise bad_request(f"expected a function call, got {node}")
    args = node.args
    if node.name in ("and", "or"):
        if not args:  # the SDK sends and() for "no predicate"
            return pa.array(np.full(table.num_rows, node.name == "and"))
        if node.name == "or" and (fast := _isin(args, table, names)) is not None:
            return fast
        parts = [_eval(a, table, names) for a in args]
        combine = pc.and_kleene if node.name == "and" else pc.or_kleene
        return functools.reduce(combine, parts)
    if node.name in _COMPARISONS and len(args) == 2 and isinstance(args[1], Lit):
        column, scalar = _comparable(_column(args[0], table, names), args[1].value)
        return getattr(pc, node.name)(column, scalar)
    if node.name in ("is_null", "is_valid") and len(args) == 1:
        return getattr(pc, node.name)(_column(args[0], table, names))
    if node.name == "match_substring" and len(args) == 2 and isinstance(args[1], Lit):
        pattern = args[1].value
        pattern = pattern.decode() if isinstance(pattern, bytes) else str(pattern)
        return pc.match_substring(_column(args[0], table, names), pattern=pattern)
    raise bad_request(f"unsupported predicate function {node.name}/{len(args)}")


def _isin(args: tuple[Node, ...], table: pa.Table, names: list[str]) -> Any:
    """``isin`` reaches the server as or(equal(c, v1), equal(c, v2), ...): evaluate it as one
    ``is_in`` (thousands of values are normal; one compare per value would be quadratic)."""
    first = args[0]
    if not (isinstance(first, Call) and first.args and isinstance(first.args[0], Col)):
        return None
    col = first.args[0]
    values = []
    for a in args:
        if not (isinstance(a, Call) and a.name == "equal" and len(a.args) == 2
                and a.args[0] == col and isinstance(a.args[1], Lit)):  # fmt: skip
            return None
        values.append(a.args[1].value)
    column, scalar = _comparable(_column(col, table, names), values[0])
    value_set = pa.array(values, type=scalar.type)
    return pc.is_in(column, value_set=value_set)


# ---------------------------------------------------------------------- paging


@dataclass(frozen=True)
class SplitRequest:
    """The paging headers of one QueryData request."""

    split_id: int
    num_splits: int
    row_groups_per_sub_split: int
    num_sub_splits: int
    start_row_ids: Mapping[int, int]  # sub-split -> first row id still to send
    limit_rows: int  # per sub-split per reply; 0 = no limit


def page(rows: pa.Table, request: QueryRequest, split: SplitRequest,
         schema: pa.Schema) -> list[SubSplitChunk]:  # fmt: skip
    """Cut the matching rows (sorted by $row_id) into this request's sub-split chunks.

    Rows belong to sub-splits by groups of row ids, like VAST's row groups, so a small table
    lives entirely in split 0 / sub-split 0 and comes back in insertion order; a sub-split
    resumes from the row id the previous reply's end-of-stream prefix gave the client.
    """
    group = ROWS_PER_ROW_GROUP * max(split.row_groups_per_sub_split, 1)
    ids = rows[ROW_ID].to_numpy()
    owner = (ids // group) % (split.num_splits * split.num_sub_splits)
    fields = [ROW_ID_FIELD if n == ROW_ID else schema.field(n) for n in request.projection]
    chunks = []
    for sub in range(split.num_sub_splits):
        start = split.start_row_ids.get(sub, 0)
        if start == SUBSPLIT_DONE_ROW_ID:
            continue  # finished in an earlier reply; the client only waits for the others
        mine = np.flatnonzero((owner == split.split_id * split.num_sub_splits + sub)
                              & (ids >= start))  # fmt: skip
        next_row_id = SUBSPLIT_DONE_ROW_ID
        if split.limit_rows and len(mine) > split.limit_rows:
            next_row_id = int(ids[mine[split.limit_rows]])
            mine = mine[: split.limit_rows]
        taken = rows.take(pa.array(mine, pa.int64()))
        if fields:
            table = pa.Table.from_arrays([taken[f.name] for f in fields], schema=pa.schema(fields))
        else:  # an empty projection: VAST sends the row count only
            table = taken.select([])
        chunks.append(SubSplitChunk(sub, next_row_id, table))
    return chunks
