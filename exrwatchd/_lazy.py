"""Package faces loaded on first use (PEP 562), for packages whose face is costly to import
all at once (`watch`, `config`): `exrwatchd inspect` needs one or two names of each."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_face(
    package: str, face: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level `__getattr__` and `__dir__` of `package`, whose public names are
    `face`'s keys, each defined in the submodule its value names."""

    def __getattr__(name: str) -> Any:
        module = face.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        vars(sys.modules[package])[name] = value  # later lookups do not come back here
        return value

    def __dir__() -> list[str]:
        return sorted(face)

    return __getattr__, __dir__
