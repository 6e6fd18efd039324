"""What a render output's file name says: its frame number."""

from __future__ import annotations

import re

# `name.####.exr` or `name_####.exr`, any padding; the name part must not be empty. Any
# character may be in it, a newline too (DOTALL), and nothing may follow ".exr" (\Z, not $).
_FRAME = re.compile(r"^.+[._](\d+)\.exr\Z", re.IGNORECASE | re.DOTALL)

#: The largest frame number: frame numbers go to int64 columns, and the journal's JSON reads
#: larger integers back as floats. Digits beyond it are a name, not a frame number.
MAX_FRAME = 2**63 - 1
_MAX_DIGITS = len(str(MAX_FRAME))


def frame_number(basename: str) -> int | None:
    match = _FRAME.match(basename)
    if match is None:
        return None
    digits = match.group(1)
    # Length first: int() is slow on long strings and refuses more than 4300 digits.
    if len(digits.lstrip("0")) > _MAX_DIGITS:
        return None
    frame = int(digits)
    return frame if frame <= MAX_FRAME else None


def split_frame_name(basename: str) -> tuple[str, str, str] | None:
    """`(head, digits, tail)` of a frame's file name, or None where frame_number says None.

    `head + digits + tail == basename`: "beauty.0001.exr" -> ("beauty.", "0001", ".exr").
    The same expression as frame_number, so the two can never disagree on what is a frame.
    """
    match = _FRAME.match(basename)
    if match is None:
        return None
    start, end = match.span(1)
    return basename[:start], match.group(1), basename[end:]
