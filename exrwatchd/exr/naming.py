"""What a render output's file name says: its frame number."""

from __future__ import annotations

import re

# `name.####.exr` or `name_####.exr`, any padding; the name part must not be empty.
_FRAME = re.compile(r"^.+[._](\d+)\.exr$", re.IGNORECASE)


def frame_number(basename: str) -> int | None:
    match = _FRAME.match(basename)
    return int(match.group(1)) if match else None
