"""The catalog's four tables, declared once as Arrow schemas.

Everything else derives from these: the row builder (`rows.py`), the local SQLite catalog's
DDL (`sinks/local.py`) and the VAST DataBase tables (`sinks/vast.py` hands the same
`pa.Schema` to ``create_table``). Table and column names are the predecessor's (see
../shared/seed), with the columns it lacked added; tests check that every derivation agrees.

Only types VAST DataBase accepts are used: ``pa.string()`` (never ``large_string``; JSON is
stored as a string), int32/int64, float64, bool, ``timestamp("us", tz="UTC")`` and vectors as
fixed-size lists of non-nullable float32. Every field carries its description as field
metadata (``b"doc"``), and the schema carries the catalog version, so the schema documents
itself wherever it travels (VAST 5.5+ servers also expect non-empty metadata). One column is
``pa.binary()``: files.file_path_bytes, the exact bytes of a path.

Key: ``file_id`` is a function of the normalized path alone (`rows.file_id_for`): a
re-rendered frame keeps its id, so its rows are replaced rather than duplicated. Children
(parts, channels, attributes) carry ``file_id`` and ``file_path`` and are always replaced
together with their files row.
"""

from __future__ import annotations

import pyarrow as pa

#: Bumped whenever a table, column or a column's meaning changes. 5: the same tables and
#: columns; the local catalog stores the child tables' rows keyed by an integer, behind views
#: (exrwatchd/sinks/_sqlite_catalog.py), which older versions could not write.
CATALOG_VERSION = 5

METADATA_DIM = 384  # length of files.metadata_embedding (exrwatchd.exr.embed.METADATA_DIM)
CHANNEL_DIM = 128  # length of files.channel_fingerprint (exrwatchd.exr.embed.CHANNEL_DIM)

TIMESTAMP = pa.timestamp("us", tz="UTC")


def vector_type(dim: int) -> pa.DataType:
    """A VAST vector column: fixed-size list of non-nullable float32."""
    return pa.list_(pa.field("item", pa.float32(), nullable=False), dim)


def _f(name: str, type_: pa.DataType, doc: str, *, nullable: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"doc": doc})


def _schema(table: str, *fields: pa.Field) -> pa.Schema:
    return pa.schema(
        fields,
        metadata={"table": table, "catalog_version": str(CATALOG_VERSION)},
    )


_FILE_ID = "sha256 of the normalized path's bytes, first 32 hex chars; joins the four tables"
_FILE_PATH = "the path as the watcher saw it (bytes that are not UTF-8 shown as \\udcXX)"
_PART_INDEX = "0-based index of the part in the file"

FILES = _schema(
    "files",
    _f("file_id", pa.string(), _FILE_ID + "; depends on the path only, never on mtime"),
    _f("file_path", pa.string(), _FILE_PATH),
    _f("file_path_normalized", pa.string(),
       "os.path.normpath of the path: case kept, symlinks not resolved"),
    _f("header_hash", pa.string(), "sha256 hex of the header bytes; null for error records",
       nullable=True),
    _f("size_bytes", pa.int64(), "file size when inspected", nullable=True),
    _f("mtime", TIMESTAMP, "file modification time (UTC)", nullable=True),
    _f("inode", pa.int64(),
       "inode number when inspected (values >= 2**63 stored as value - 2**64)", nullable=True),
    _f("multipart_count", pa.int32(), "number of parts (1 single-part, 0 error records)"),
    _f("is_deep", pa.bool_(), "any part is deep (deepscanline/deeptile)"),
    _f("is_complete", pa.bool_(), "every chunk the header promises is present"),
    _f("incomplete_reason", pa.string(), "why the file is incomplete; null when complete",
       nullable=True),
    _f("error_kind", pa.string(),
       "stable class of the read failure (not_exr, truncated_header, vanished...); null if ok",
       nullable=True),
    _f("error_message", pa.string(), "human description of the read failure", nullable=True),
    _f("frame_number", pa.int64(), "frame number from the file name (name.####.exr); null "
       "when past 2**63 - 1", nullable=True),
    _f("metadata_embedding", vector_type(METADATA_DIM),
       "unit vector describing the file's structure; null for error records", nullable=True),
    _f("channel_fingerprint", vector_type(CHANNEL_DIM),
       "unit vector describing the channel layout alone; null for error records",
       nullable=True),
    _f("embedding_version", pa.int32(), "version of the embedding that made the vectors",
       nullable=True),
    _f("inspection_timestamp", TIMESTAMP,
       "when the current header (header_hash) was first inspected"),
    _f("inspection_count", pa.int64(), "how many inspections of this path were recorded"),
    _f("last_inspected", TIMESTAMP, "when this path was last inspected"),
    _f("last_inspection_id", pa.string(),
       "inspection_id this row was last written from; a replay of it changes nothing"),
    # Pixel health ([inspect] pixel_stats): null when not computed, and all but
    # pixel_stats_error null when OpenImageIO could not read the pixels.
    _f("has_nan", pa.bool_(), "some channel holds a NaN value; null when not computed",
       nullable=True),
    _f("has_inf", pa.bool_(), "some channel holds +Inf or -Inf; null when not computed",
       nullable=True),
    _f("is_constant", pa.bool_(),
       "every pixel of every part has the same value (an all-black frame); null when not "
       "computed", nullable=True),
    _f("pixel_stats_error", pa.string(),
       "why the pixel stats could not be computed (sub-sampled channels...); else null",
       nullable=True),
    _f("pixel_stats_digest", pa.string(),
       "sha256 of the pixel stats as recorded; a re-inspection with the same header but other "
       "stats rewrites the rows", nullable=True),
    # Appended (catalogs are upgraded in place); null in rows written before it existed.
    _f("file_path_bytes", pa.binary(),
       "the exact bytes of file_path, which tells apart names whose text forms are equal",
       nullable=True),
)  # fmt: skip

PARTS = _schema(
    "parts",
    _f("file_id", pa.string(), _FILE_ID),
    _f("file_path", pa.string(), _FILE_PATH),
    _f("part_index", pa.int32(), _PART_INDEX),
    _f("part_name", pa.string(), "the part's name attribute (multi-part files)",
       nullable=True),
    _f("view_name", pa.string(), "the part's view attribute", nullable=True),
    _f("multi_view", pa.bool_(), "the file holds several views (multiView or per-part views)"),
    _f("part_type", pa.string(), "scanlineimage | tiledimage | deepscanline | deeptile"),
    _f("data_window", pa.string(), "JSON [xmin,ymin,xmax,ymax], inclusive"),
    _f("display_window", pa.string(), "JSON [xmin,ymin,xmax,ymax], inclusive"),
    _f("width", pa.int64(), "data window width in pixels"),
    _f("height", pa.int64(), "data window height in pixels"),
    _f("pixel_aspect_ratio", pa.float64(), "pixelAspectRatio; null when not finite",
       nullable=True),
    _f("line_order", pa.string(), "increasing_y | decreasing_y | random_y"),
    _f("compression", pa.string(), "none, rle, zips, zip, piz, pxr24, b44, b44a, dwaa, ..."),
    _f("is_tiled", pa.bool_(), "the part is tiled (tiledimage or deeptile)"),
    _f("tile_width", pa.int64(), "tile width in pixels; null when not tiled", nullable=True),
    _f("tile_height", pa.int64(), "tile height in pixels; null when not tiled", nullable=True),
    _f("tile_level_mode", pa.string(), "one_level | mipmap_levels | ripmap_levels",
       nullable=True),
    _f("tile_rounding_mode", pa.string(), "round_down | round_up", nullable=True),
    _f("chunk_count", pa.int64(), "chunks (scan-line blocks or tiles) the part holds"),
    _f("is_deep", pa.bool_(), "deepscanline or deeptile"),
    _f("channel_count", pa.int32(), "number of channels in the part"),
)  # fmt: skip

CHANNELS = _schema(
    "channels",
    _f("file_id", pa.string(), _FILE_ID),
    _f("file_path", pa.string(), _FILE_PATH),
    _f("part_index", pa.int32(), _PART_INDEX),
    _f("channel_index", pa.int32(), "0-based position in the part's channel list"),
    _f("channel_name", pa.string(), "full channel name (diffuse.R, left.Z, A)"),
    _f("layer_name", pa.string(), "name before the last dot (diffuse); '' when there is none"),
    _f("component_name", pa.string(), "name after the last dot (R)"),
    _f("channel_type", pa.string(), "half | float | uint"),
    _f("x_sampling", pa.int32(), "horizontal sub-sampling"),
    _f("y_sampling", pa.int32(), "vertical sub-sampling"),
    _f("p_linear", pa.bool_(), "pLinear flag"),
    _f("view_name", pa.string(), "view the channel belongs to (multi-view files)",
       nullable=True),
    # Pixel health ([inspect] pixel_stats), of MIP level 0; deep parts: over all samples.
    _f("pixel_min", pa.float64(),
       "smallest finite value; null when not computed or the channel has no finite value",
       nullable=True),
    _f("pixel_max", pa.float64(), "largest finite value; null as pixel_min", nullable=True),
    _f("pixel_mean", pa.float64(), "mean of the finite values; null as pixel_min",
       nullable=True),
    _f("nan_count", pa.int64(), "NaN values; null when not computed", nullable=True),
    _f("inf_count", pa.int64(), "+Inf and -Inf values; null when not computed",
       nullable=True),
)  # fmt: skip

ATTRIBUTES = _schema(
    "attributes",
    _f("file_id", pa.string(), _FILE_ID),
    _f("file_path", pa.string(), _FILE_PATH),
    _f("part_index", pa.int32(), _PART_INDEX),
    _f("attribute_name", pa.string(), "header attribute name"),
    _f("attribute_type", pa.string(), "EXR type name (string, v2f, box2i, chlist...)"),
    _f("attribute_value", pa.string(),
       "JSON text of the decoded value; null JSON for opaque types"),
    _f("attribute_base64", pa.string(),
       "base64 of the raw bytes for opaque types, previews and invalid UTF-8; else null",
       nullable=True),
)  # fmt: skip

_FRAMES_JSON = "JSON list of frame numbers"

# One row per frame sequence (files of one directory named name.####.exr or name_####.exr),
# kept up to date by the daemon as frames arrive, change or vanish (exrwatchd/sequences/).
SEQUENCES = _schema(
    "sequences",
    _f("sequence_id", pa.string(),
       "sha256 of the bytes of directory/pattern, first 32 hex chars; the key"),
    _f("directory", pa.string(), "directory holding the frames (as file_path shows it)"),
    _f("pattern", pa.string(), "printf pattern of the frame names, e.g. beauty.%04d.exr"),
    _f("first_frame", pa.int64(), "lowest frame number present"),
    _f("last_frame", pa.int64(), "highest frame number present"),
    _f("frame_count", pa.int64(), "frames present (complete or not)"),
    _f("missing_count", pa.int64(), "frames missing between first_frame and last_frame"),
    _f("missing_ranges", pa.string(),
       "JSON list of [first, last] ranges of missing frames, inclusive"),
    _f("incomplete_frames", pa.string(), _FRAMES_JSON + " recorded before they were whole"),
    _f("unhealthy_frames", pa.string(),
       _FRAMES_JSON + " that could not be read or that pixel checks flagged"),
    _f("structure_consistent", pa.bool_(),
       "every frame with a readable header has the same layout (parts, channels, compression)"),
    _f("layout_key", pa.string(), "the layout most frames share; null if none is readable",
       nullable=True),
    _f("odd_layout_frames", pa.string(),
       _FRAMES_JSON + " whose layout differs from layout_key (e.g. a missing AOV)"),
    _f("is_whole", pa.bool_(),
       "nothing missing, incomplete, in progress, unhealthy or of another layout"),
    _f("last_update", TIMESTAMP, "when the daemon last changed this row"),
    # Catalog version 4 (appended, as every version only appends):
    _f("notation", pa.string(),
       "the frames present in fileseq's notation, e.g. beauty.1001-1040,1042-1100#.exr; "
       "null in rows written before catalog version 4", nullable=True),
    _f("in_progress_frames", pa.string(),
       _FRAMES_JSON + " found incomplete that the daemon is still waiting for; null in rows "
       "written before catalog version 4", nullable=True),
)  # fmt: skip

#: Table name -> schema, in the order tables are created and listed.
TABLES: dict[str, pa.Schema] = {
    "files": FILES,
    "parts": PARTS,
    "channels": CHANNELS,
    "attributes": ATTRIBUTES,
    "sequences": SEQUENCES,
}

#: The tables that hang off files by file_id.
CHILD_TABLES = ("parts", "channels", "attributes")
#: The tables an inspection record becomes rows of.
FILE_TABLES = ("files", *CHILD_TABLES)
