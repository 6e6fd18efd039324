"""Finding files: name filters, tree walks, observers (inotify/poll), reconciliation against the
journal, the settle rule, and the set of running watches.

The face is loaded on first use (PEP 562): `exrwatchd inspect` walks trees with tree.py and
filters.py alone, and importing the observers, the journal and logging with them cost its start
~0.1 s, more than the walk of a few thousand files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from exrwatchd._lazy import lazy_face

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


__getattr__, __dir__ = lazy_face(__name__, _FACE)
