"""Typed reads of a JSON record's values, for exrwatchd/catalog/rows.py. Pure.

Each `as_*` checks one value and returns it as its column's Python type (`what` names the
value in the message), or raises RecordError. exrwatchd.catalog.rows re-exports RecordError
and display_text; import them from there.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from exrwatchd.errors import ExrwatchdError

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_BOX_KEYS = ("xmin", "ymin", "xmax", "ymax")


class RecordError(ExrwatchdError):
    """The record cannot become catalog rows (a key is missing or has the wrong type).

    Permanent: the same record will always fail, so a sink rejects the entry.
    """


def display_text(text: str) -> str:
    """`text` as storable UTF-8: lone surrogates become ``\\udcff``-style escapes."""
    if text.isascii():  # nearly every name and value: no encoding needed to know
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def need(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    try:
        return mapping[key]
    except KeyError:
        raise RecordError(f"{where} has no {key!r}") from None
    except TypeError:
        raise RecordError(f"{where} is not an object") from None


def as_str(value: Any, what: str, *, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise RecordError(f"{what} must be a string, got {type(value).__name__}")
    return display_text(value)


def as_int(value: Any, what: str, *, nullable: bool = False) -> int | None:
    if value is None and nullable:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise RecordError(f"{what} must be an integer, got {type(value).__name__}")
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise RecordError(f"{what} = {value} does not fit in 64 bits")
    return value


def as_bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise RecordError(f"{what} must be a boolean, got {type(value).__name__}")
    return value


def as_float(value: Any, what: str) -> float | None:
    """A finite float, or None: the reader writes non-finite header floats as "NaN" text."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise RecordError(f"{what} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"{what} must be a number, got {type(value).__name__}")
    value = float(value)
    return value if math.isfinite(value) else None


def as_time(value: Any, what: str, *, nullable: bool = False) -> datetime | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise RecordError(f"{what} must be an ISO 8601 string, got {type(value).__name__}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise RecordError(f"{what} is not ISO 8601: {value!r}") from None
    if moment.tzinfo is None:  # the record's times are UTC by definition
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def as_vector(value: Any, dim: int, what: str) -> np.ndarray | None:
    """A vector from a list of numbers, or from base64 of little-endian float32 (how the
    daemon's journal records carry them)."""
    if value is None:
        return None
    try:
        if isinstance(value, str):
            vec = np.frombuffer(base64.b64decode(value, validate=True), dtype="<f4")
        else:
            vec = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise RecordError(
            f"{what} must be a list of {dim} numbers or base64 float32 bytes"
        ) from None
    if vec.shape != (dim,):
        raise RecordError(f"{what} must hold {dim} numbers, got shape {vec.shape}")
    if not np.isfinite(vec).all():
        raise RecordError(f"{what} holds NaN or infinite values")
    vec.flags.writeable = False
    return vec


def as_inode(value: Any) -> int | None:
    # st_ino is unsigned 64-bit; the catalog column is int64: keep identity, wrap the top half.
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**64:
        raise RecordError(f"inode must be an unsigned 64-bit integer, got {value!r}")
    return value - 2**64 if value > _INT64_MAX else value


def as_frame(value: Any) -> int | None:
    # Derived from the file name, so it can be any length of digits: out of range -> null.
    # A float can only be such an integer read back from JSON (records journaled before
    # naming.frame_number had its bound): out of range too.
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)
                         and not _INT64_MIN <= value <= _INT64_MAX):  # fmt: skip
        return None
    return as_int(value, "frame_number")


def as_box(value: Any, what: str) -> str:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 4
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise RecordError(f"{what} must be [{','.join(_BOX_KEYS)}] integers, got {value!r}")
    return f"[{value[0]},{value[1]},{value[2]},{value[3]}]"  # ints: this is exact JSON


def _finite_json(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_json(v) for v in value]
    return value


def _has_non_finite(value: Any) -> bool:
    # orjson writes NaN as null; the catalog spells it "NaN" like the attribute decoder.
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_non_finite(v) for v in value)
    return False


def as_json_text(value: Any, what: str) -> str:
    """Strict JSON text (non-finite floats as "NaN" strings, as the attribute decoder does)."""
    # Values come from the attribute decoder (non-finite floats already spelled "NaN")
    # through JSON, so a float NaN can only appear in a hand-made record: checked only
    # when orjson's output shows a null it may have produced from one.
    try:
        text = orjson.dumps(value).decode()
        if "null" in text and _has_non_finite(value):
            text = orjson.dumps(_finite_json(value)).decode()
    except TypeError:  # lone surrogates (or an unserialisable object)
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise RecordError(f"{what} is not JSON: {exc}") from None
    return display_text(text)
