"""The command line: `exrwatchd inspect | check-config | run | scan | status | sequences |
export | journal | vast init` (main.py is the console entry point)."""

from exrwatchd.cli.main import main

__all__ = [
    "main",
]
