"""Which base names the daemon cares about: include and exclude globs, case-insensitive.

Compiled once into two regular expressions: a scan of a million names calls this a million
times, and one compiled match is far cheaper than looping fnmatch over every pattern.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

from exrwatchd.config import DEFAULT_EXCLUDE, DEFAULT_INCLUDE


def _compile(globs: Iterable[str]) -> re.Pattern[str] | None:
    patterns = [fnmatch.translate(g) for g in globs]
    if not patterns:
        return None
    # Renders arrive as .exr and .EXR alike, often written from Windows hosts.
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE | re.DOTALL)


class NameFilter:
    """`accepts(name)`: the base name matches an include glob and no exclude glob."""

    __slots__ = ("_exclude", "_include")

    def __init__(
        self, include: Iterable[str] = DEFAULT_INCLUDE, exclude: Iterable[str] = DEFAULT_EXCLUDE
    ) -> None:
        self._include = _compile(include)
        self._exclude = _compile(exclude)

    def accepts(self, name: str) -> bool:
        if self._include is None or self._include.match(name) is None:
            return False
        return self._exclude is None or self._exclude.match(name) is None

    def __call__(self, name: str) -> bool:
        return self.accepts(name)
