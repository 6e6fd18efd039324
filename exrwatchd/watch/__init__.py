"""Finding files: name filters, tree walks, observers (inotify/poll), reconciliation against the
journal, the settle rule, and the set of running watches.

The face is loaded on first use (PEP 562): `exrwatchd inspect` walks trees with tree.py and
filters.py alone, and importing the observers, the journal and logging with them cost its start
~0.1 s, more than the walk of a few thousand files.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from exrwatchd.watch.filters import NameFilter
    from exrwatchd.watch.observers import Inbox
    from exrwatchd.watch.reconcile import Reconciler
    from exrwatchd.watch.settle import SettledFile, Settler, Unreadable, Vanished
    from exrwatchd.watch.watches import Watches

#: Each name of the face, and the module of this package that defines it.
_FACE = {
    "Inbox": "observers",
    "NameFilter": "filters",
    "Reconciler": "reconcile",
    "SettledFile": "settle",
    "Settler": "settle",
    "Unreadable": "settle",
    "Vanished": "settle",
    "Watches": "watches",
}

__all__ = [
    "Inbox",
    "NameFilter",
    "Reconciler",
    "SettledFile",
    "Settler",
    "Unreadable",
    "Vanished",
    "Watches",
]


def __getattr__(name: str) -> Any:
    module = _FACE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups do not come back here
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
