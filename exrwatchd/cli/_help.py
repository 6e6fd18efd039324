"""What `--help` says below the options of each command: an example and the exit codes.

Kept apart from the parsers (cli/main.py, cli/journal.py) so that each command's exit codes
are written once, where they can be read side by side.
"""

from __future__ import annotations

import argparse
import textwrap

__all__ = ["CONFIG_HELP", "Formatter", "epilog"]

CONFIG_HELP = (
    "the daemon's config file (default: $EXRWATCHD_CONFIG, else /etc/exrwatchd/config.toml)"
)

_CONFIG_78 = (78, "the config file is missing or invalid (the message names the file and key)")

# command -> (examples, exit codes)
_HELP: dict[str, tuple[tuple[str, ...], tuple[tuple[int, str], ...]]] = {
    "inspect": (
        ("exrwatchd inspect --json /renders/sh010 | jq .complete",),
        ((0, "every file was read (incomplete ones too, unless --strict)"),
         (1, "a file could not be read (not_found, vanished, not_exr...), or with --strict "
             "was incomplete"),
         (2, "usage error")),
    ),
    "check-config": (
        ("exrwatchd check-config --connect /etc/exrwatchd/config.toml",),
        ((0, "`run` would start with this config (warnings, if any, on stderr)"),
         (2, "usage error"),
         (69, "--connect: the sink cannot be reached"),
         (78, "the config is missing or invalid, or (--connect) the sink or state dir is not "
              "usable as configured; one problem per line")),
    ),
    "run": (
        ("exrwatchd run --config /etc/exrwatchd/config.toml",),
        ((0, "stopped cleanly (SIGTERM, SIGINT)"),
         (1, "something vital died; the journal makes a restart lose nothing"),
         (75, "a start-up failure that waiting can fix (a full disk): systemd restarts it"),
         _CONFIG_78),
    ),
    "scan": (
        ("exrwatchd scan --config /etc/exrwatchd/config.toml /renders/sh010",),
        ((0, "everything found was inspected and persisted"),
         (1, "something vital died during the scan"),
         (75, "a start-up failure that waiting can fix (a full disk)"),
         _CONFIG_78),
    ),
    "status": (
        ("exrwatchd status || echo \"exrwatchd needs attention ($?)\"",),
        ((0, "running and healthy"),
         (1, "running but degraded: sink failing, dead letters, journal disk full, a dead "
             "watcher, an unreadable watched path, or no status written for over a minute"),
         (3, "not running (LSB)"),
         _CONFIG_78),
    ),
    "sequences": (
        ("exrwatchd sequences --gaps",),
        ((0, "listed (also when there is none)"), _CONFIG_78),
    ),
    "export": (
        ("exrwatchd export --format parquet --where-path /renders/sh010 sh010.parquet",),
        ((0, "exported (also when no row matched: the file then holds the columns only)"),
         (1, "no catalog, or it cannot be read, or OUT cannot be written (the message names "
             "the file)"),
         (2, "usage error"), _CONFIG_78),
    ),
    "similar": (
        ("exrwatchd similar --layout /renders/sh010/hero.1001.exr",
         "exrwatchd similar --within /renders/sh010 --lowest sh010/beauty.1001.exr"),
        ((0, "ranked (also when the catalog holds nothing comparable)"),
         (1, "PATH cannot be read and is not in the catalog, or the catalog cannot be read"),
         (2, "usage error"), _CONFIG_78),
    ),
    "reembed": (
        ("exrwatchd reembed /renders/showA",),
        ((0, "marked (the message says how many)"),
         (1, "no journal, or it cannot be opened"), _CONFIG_78),
    ),
    "vast init": (
        ("exrwatchd vast init --config /etc/exrwatchd/config.toml",),
        ((0, "the schema and tables are ready"),
         (1, "VAST refused or could not be reached (the message says why)"),
         _CONFIG_78),
    ),
    "journal stats": (
        ("exrwatchd journal stats --json",),
        ((0, "printed"), (1, "no journal, or it cannot be read"), (2, "usage error"), _CONFIG_78),
    ),
    "journal failed": (
        ("exrwatchd journal failed --kind dead --limit 20",),
        ((0, "printed"), (1, "no journal, or it cannot be read"), (2, "usage error"), _CONFIG_78),
    ),
    "journal retry": (
        ("exrwatchd journal retry /renders/sh010/beauty.1001.exr",),
        ((0, "put back in the outbox"), (1, "PATH has no dead letter, or no journal"),
         (2, "usage error"), _CONFIG_78),
    ),
    "journal purge": (
        ("exrwatchd journal purge --done-older-than 30d --dry-run",),
        ((0, "purged (or counted)"), (1, "no journal, or it cannot be read"), (2, "usage error"),
         _CONFIG_78),
    ),
}  # fmt: skip


def epilog(command: str) -> str:
    """The example and the exit codes of `command` ("status", "journal stats"), laid out."""
    examples, codes = _HELP[command]
    lines = ["example:", *(f"  {e}" for e in examples), "", "exit status:"]
    lines += [textwrap.fill(text, 79, initial_indent=f"  {code:<3} ", subsequent_indent=" " * 6)
              for code, text in codes]  # fmt: skip
    return "\n".join(lines)


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Text with line breaks (the epilogs, hand-made descriptions) as written; a paragraph on
    one line wrapped to the terminal, as argparse does by default."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)
