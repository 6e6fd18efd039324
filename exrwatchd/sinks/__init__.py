"""Sinks: where catalog rows go. Every sink implements `base.Sink` and reports per entry."""

from exrwatchd.sinks.base import Delivery, Outcome, Sink, SinkUnavailable
from exrwatchd.sinks.local import CATALOG_FILENAME, LocalSink

__all__ = ["CATALOG_FILENAME", "Delivery", "LocalSink", "Outcome", "Sink", "SinkUnavailable"]
