"""Finding files: name filters, tree walks, observers (inotify/poll), reconciliation against the
journal, the settle rule, and the set of running watches."""

from exrwatchd.watch.filters import NameFilter
from exrwatchd.watch.observers import Inbox
from exrwatchd.watch.reconcile import Reconciler
from exrwatchd.watch.settle import SettledFile, Settler, Unreadable, Vanished
from exrwatchd.watch.watches import Watches

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
