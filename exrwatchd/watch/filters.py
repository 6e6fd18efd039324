"""Which base names the daemon cares about: include and exclude globs, case-insensitive.

A scan of a million names calls this a million times, so patterns are compiled once: the
common shapes (`*.exr`, `.*`, `*.tmp`) become str.startswith/endswith checks on the
lower-cased name, and anything else one combined regular expression.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

from exrwatchd.config import DEFAULT_EXCLUDE, DEFAULT_INCLUDE

_GLOB_CHARS = frozenset("*?[")


class _Globs:
    """A set of globs split into prefix, suffix and general patterns."""

    __slots__ = ("prefixes", "regex", "suffixes")

    def __init__(self, globs: Iterable[str]) -> None:
        prefixes, suffixes, general = [], [], []
        for glob in globs:
            body = glob.lower()
            if body.startswith("*") and not _GLOB_CHARS & set(body[1:]):
                suffixes.append(body[1:])
            elif body.endswith("*") and not _GLOB_CHARS & set(body[:-1]):
                prefixes.append(body[:-1])
            else:
                general.append(fnmatch.translate(glob))
        self.prefixes = tuple(prefixes)
        self.suffixes = tuple(suffixes)
        # Renders arrive as .exr and .EXR alike, often written from Windows hosts.
        self.regex = (
            re.compile("|".join(f"(?:{p})" for p in general), re.IGNORECASE | re.DOTALL)
            if general
            else None
        )

    def match(self, name: str, lowered: str) -> bool:
        if self.suffixes and lowered.endswith(self.suffixes):
            return True
        if self.prefixes and lowered.startswith(self.prefixes):
            return True
        return self.regex is not None and self.regex.match(name) is not None


class NameFilter:
    """`accepts(name)`: the base name matches an include glob and no exclude glob."""

    __slots__ = ("_exclude", "_include")

    def __init__(
        self, include: Iterable[str] = DEFAULT_INCLUDE, exclude: Iterable[str] = DEFAULT_EXCLUDE
    ) -> None:
        self._include = _Globs(include)
        self._exclude = _Globs(exclude)

    def accepts(self, name: str) -> bool:
        lowered = name.lower()
        return self._include.match(name, lowered) and not self._exclude.match(name, lowered)

    def __call__(self, name: str) -> bool:
        return self.accepts(name)
