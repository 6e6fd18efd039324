"""Bytes on the wire: S3 XML errors, the SDK's flatbuffer replies, Arrow IPC, query framing.

The flatbuffer replies are built with the SDK's own generated modules (``vastdb.vast_flatbuf``)
so that a schema change on the client side breaks these tests rather than drifting silently.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

import flatbuffers
import pyarrow as pa
from vastdb.vast_flatbuf.tabular import (
    GetTableStatsResponse,
    ListSchemasResponse,
    ListTablesResponse,
    ObjectDetails,
    VipRange,
)

from .store import bad_request

# Stream ids and row ids of the QueryData reply (see vastdb._internal).
QUERY_DONE_STREAM_ID = 0xFFFFFFFE
SUBSPLIT_DONE_ROW_ID = (1 << 48) - 1
_IPC_EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"


def error_xml(code: str, message: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        "<Resource></Resource><RequestId>emulator</RequestId></Error>"
    ).encode()


@dataclass(frozen=True)
class ObjectInfo:
    """One entry of a schema or table listing."""

    name: str
    handle: int
    num_rows: int = 0
    size_in_bytes: int = 0


def _vector(builder: flatbuffers.Builder, offsets: Sequence[int]) -> int:
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return int(builder.EndVector())


def _object_details(builder: flatbuffers.Builder, obj: ObjectInfo) -> int:
    name = builder.CreateString(obj.name)
    # The SDK calls .decode() on Properties and Handle unconditionally: both must be present.
    properties = builder.CreateString("")
    handle = builder.CreateString(str(obj.handle))
    ObjectDetails.Start(builder)
    ObjectDetails.AddName(builder, name)
    ObjectDetails.AddProperties(builder, properties)
    ObjectDetails.AddHandle(builder, handle)
    ObjectDetails.AddNumRows(builder, obj.num_rows)
    ObjectDetails.AddSizeInBytes(builder, obj.size_in_bytes)
    return int(ObjectDetails.End(builder))


def list_schemas_reply(bucket: str, schemas: Iterable[ObjectInfo]) -> bytes:
    builder = flatbuffers.Builder(1024)
    items = [_object_details(builder, s) for s in schemas]
    bucket_name = builder.CreateString(bucket)
    vector = _vector(builder, items)
    ListSchemasResponse.Start(builder)
    ListSchemasResponse.AddBucketName(builder, bucket_name)
    ListSchemasResponse.AddSchemas(builder, vector)
    builder.Finish(ListSchemasResponse.End(builder))
    return bytes(builder.Output())


def list_tables_reply(bucket: str, schema: str, tables: Iterable[ObjectInfo]) -> bytes:
    builder = flatbuffers.Builder(1024)
    items = [_object_details(builder, t) for t in tables]
    bucket_name = builder.CreateString(bucket)
    schema_name = builder.CreateString(schema)
    vector = _vector(builder, items)
    ListTablesResponse.Start(builder)
    ListTablesResponse.AddBucketName(builder, bucket_name)
    ListTablesResponse.AddSchemaName(builder, schema_name)
    ListTablesResponse.AddTables(builder, vector)
    builder.Finish(ListTablesResponse.End(builder))
    return bytes(builder.Output())


def table_stats_reply(num_rows: int, size_in_bytes: int, vips: Sequence[str] = ()) -> bytes:
    """``vips``: IPv4 addresses to advertise; empty makes the SDK skip endpoint discovery."""
    builder = flatbuffers.Builder(256)
    ranges = []
    for vip in vips:
        start = builder.CreateString(vip)
        VipRange.Start(builder)
        VipRange.AddStartAddress(builder, start)
        VipRange.AddAddressCount(builder, 1)
        ranges.append(VipRange.End(builder))
    vector = _vector(builder, ranges) if ranges else None
    GetTableStatsResponse.Start(builder)
    GetTableStatsResponse.AddNumRows(builder, num_rows)
    GetTableStatsResponse.AddSizeInBytes(builder, size_in_bytes)
    if vector is not None:
        GetTableStatsResponse.AddVips(builder, vector)
    builder.Finish(GetTableStatsResponse.End(builder))
    return bytes(builder.Output())


# ---------------------------------------------------------------------- Arrow IPC


def read_ipc(body: bytes) -> pa.Table:
    """An Arrow IPC stream from a request body (inserts, updates, deletes)."""
    try:
        return pa.ipc.open_stream(pa.BufferReader(body)).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise bad_request(f"invalid Arrow IPC stream: {exc}") from exc


def read_ipc_schema(body: bytes) -> pa.Schema:
    """A bare serialized schema (create table, add/drop column) or a stream's schema."""
    return pa.ipc.read_schema(pa.BufferReader(body))


def ipc_stream(table: pa.Table | pa.Schema) -> bytes:
    schema = table if isinstance(table, pa.Schema) else table.schema
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        if isinstance(table, pa.Table):
            writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


@dataclass(frozen=True)
class SubSplitChunk:
    """The rows one sub-split sends in one reply, and where it would go on next time."""

    stream_id: int
    next_row_id: int  # SUBSPLIT_DONE_ROW_ID when the sub-split has nothing more
    table: pa.Table


def query_reply(chunks: Iterable[SubSplitChunk], max_rows_per_batch: int = 64 * 1024) -> bytes:
    """Frame a QueryData reply the way ``vastdb._internal`` parses it.

    Every Arrow IPC message (schema, record batches, end-of-stream) is prefixed by
    ``<u32 stream id><u64 next row id>``; each sub-split is a complete IPC stream whose
    end-of-stream prefix carries the row id to resume from; then 0xFFFFFFFE ends the reply.
    """
    out = bytearray()
    for chunk in chunks:
        prefix = struct.pack("<IQ", chunk.stream_id, chunk.next_row_id)
        out += prefix + chunk.table.schema.serialize().to_pybytes()
        for batch in chunk.table.to_batches(max_chunksize=max_rows_per_batch):
            if batch.num_rows:
                out += prefix + batch.serialize().to_pybytes()
        out += prefix + _IPC_EOS
    out += struct.pack("<I", QUERY_DONE_STREAM_ID)
    return bytes(out)
