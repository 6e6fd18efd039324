"""`[[hook]]` tables: who is told about which events (delivered by pipeline/hook_loop.py).

One hook is either a program (`exec`, an argv list run without a shell, the event as JSON
on stdin) or a URL (`url`, the event POSTed as JSON). A URL hook's bearer token comes only
from a file (`token_file`) or a systemd credential (`token_credential`, a name in
$CREDENTIALS_DIRECTORY), like the VAST keys: never from the config text, so the config can
be shared and versioned.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from exrwatchd.config._fields import _Context, _describe, _did_you_mean, _Field, _q, _read_table
from exrwatchd.secrets import CredentialError, Secret, read_secret_file

#: What a hook can be told about. The sequence events are those sequences.changes() makes.
HOOK_EVENTS = ("file.incomplete", "file.unhealthy", "sequence.completed", "sequence.gap",
               "sequence.gap_filled", "sequence.changed_layout")  # fmt: skip


@dataclass(frozen=True, slots=True)
class HookConfig:
    """One [[hook]]: `exec` (argv) or `url`; `name` keys its rows in the journal."""

    name: str
    on: tuple[str, ...]
    within: Path | None = None
    exec: tuple[str, ...] = ()
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    token: Secret | None = None
    timeout_seconds: float = 10.0
    max_attempts: int = 10

    def matches(self, event: str, path: str) -> bool:
        """Whether this hook wants `event` about `path` (a file, or a sequence's directory):
        `within` is a directory, so /renders/showA does not hold /renders/showAB."""
        if event not in self.on:
            return False
        if self.within is None:
            return True
        root = str(self.within).rstrip("/")
        return path == root or path.startswith(root + "/")


def _check_events(value: tuple[str, ...]) -> str | None:
    if not value:
        return "must list at least one event"
    for name in value:
        if name not in HOOK_EVENTS:
            known = ", ".join(_q(e) for e in HOOK_EVENTS)
            return f"unknown event {_q(name)}{_did_you_mean(name, HOOK_EVENTS)}; known: {known}"
    return None


def _check_hook_url(value: str) -> str | None:
    try:
        parts = urlsplit(value)
        ok = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
        _ = parts.port
    except ValueError:
        ok = False
    if ok and (parts.username or parts.password):
        return "must not contain user:password; use token_file or token_credential"
    return None if ok else "must be an http:// or https:// URL"  # not echoed: may hold a key


_HOOK = (
    _Field("name", "str"),
    _Field("on", "globs", required=True, check=_check_events),
    _Field("within", "path"),
    _Field("url", "str", check=_check_hook_url),
    _Field("token_file", "path", hidden=True),
    _Field("token_credential", "str"),
    _Field("timeout_seconds", "float", gt=0),
    _Field("max_attempts", "int", ge=1),
)


def read_hooks(data: Mapping[str, Any], ctx: _Context) -> tuple[tuple[HookConfig, ...], list[str]]:
    """The [[hook]] tables of the parsed file, and warnings; problems go to `ctx`."""
    raw = data.get("hook", [])
    if not isinstance(raw, list):
        got = "a single table ([hook])" if isinstance(raw, dict) else _describe(raw)
        ctx.error("hook", f"expected an array of tables ([[hook]]), got {got}")
        return (), []
    hooks: list[HookConfig] = []
    warnings: list[str] = []
    names: dict[str, int] = {}
    for i, item in enumerate(raw):
        where = f"hook[{i}]"
        if not isinstance(item, dict):
            ctx.error(where, f"expected a table, got {_describe(item)}")
            continue
        table = {k: v for k, v in item.items() if k not in ("headers", "exec")}
        before = len(ctx.errors)
        values = _read_table(table, where, _HOOK, ctx)
        headers = _headers(item.get("headers", {}), where, ctx)
        if "exec" in item:
            values["exec"] = _argv(item["exec"], where, ctx)
        given = {"exec", "url"} & item.keys()  # present, valid or not
        hook = _hook(values, headers, where, ctx, warnings, before, given)
        if hook is None:
            continue
        if hook.name in names:
            ctx.error(f"{where}.name", f"{_q(hook.name)} is already the name of "
                      f"hook[{names[hook.name]}]; give each hook its own name")  # fmt: skip
            continue
        names[hook.name] = i
        hooks.append(hook)
    return tuple(hooks), warnings


def _argv(raw: Any, where: str, ctx: _Context) -> list[str] | None:
    if not isinstance(raw, list) or not all(isinstance(a, str) and "\0" not in a for a in raw):
        ctx.error(f"{where}.exec", "expected an array of strings (the program and its arguments)")
        return None
    return raw


def _headers(raw: Any, where: str, ctx: _Context) -> dict[str, str]:
    if not isinstance(raw, dict):
        ctx.error(f"{where}.headers", f"expected a table of strings, got {_describe(raw)}")
        return {}
    headers: dict[str, str] = {}
    for key, value in raw.items():
        if key.lower() == "authorization":
            # A credential in the config text would be printed by check-config and read by
            # whoever can read the file: the token comes from token_file only.
            ctx.error(f"{where}.headers.{key}", "put the bearer token in token_file or "
                      "token_credential, not in the config")  # fmt: skip
        elif not isinstance(value, str) or "\n" in value or "\r" in value:
            ctx.error(f"{where}.headers.{key}", "expected a one-line string")
        else:
            headers[key] = value
    return headers


def _hook(
    v: dict[str, Any],
    headers: dict[str, str],
    where: str,
    ctx: _Context,
    warnings: list[str],
    before: int,
    given: set[str],
) -> HookConfig | None:
    argv, url = v.pop("exec", None), v.get("url")
    if len(given) != 1:
        ctx.error(where, "set exactly one of exec (a program) or url")
    if argv is not None and not os.path.isabs(argv[0] if argv else ""):
        ctx.error(f"{where}.exec", "must start with the absolute path of a program (no shell "
                  f"runs it), got {_q(argv[0]) if argv else 'an empty array'}")  # fmt: skip
    token = _token(v.pop("token_file", None), v.pop("token_credential", None), where, ctx)
    if url is None and (token is not None or headers):
        ctx.error(where, "headers, token_file and token_credential are for url hooks only")
    elif token is not None and url is not None and url.lower().startswith("http://"):
        warnings.append(f"{where}: the bearer token goes over plain http://; use https://")
    if len(ctx.errors) > before or "on" not in v:
        return None
    name = v.pop("name", None) or _default_name(argv, url)
    return HookConfig(name=name, exec=tuple(argv or ()), headers=headers, token=token, **v)


def _token(file: Path | None, credential: str | None, where: str, ctx: _Context) -> Secret | None:
    if file is not None and credential is not None:
        ctx.error(where, "set token_file or token_credential, not both")
        return None
    try:
        if file is not None:
            return Secret(read_secret_file(file, f"{where}.token_file", "file"), f"file {file}")
        if credential is None:
            return None
        directory = ctx.environ.get("CREDENTIALS_DIRECTORY")
        if not directory or "/" in credential:
            ctx.error(f"{where}.token_credential", "needs $CREDENTIALS_DIRECTORY (systemd "
                      "LoadCredential=) and a plain name")  # fmt: skip
            return None
        path = Path(directory) / credential
        value = read_secret_file(path, f"{where}.token_credential", "systemd credential")
        return Secret(value, f"$CREDENTIALS_DIRECTORY/{credential}")
    except CredentialError as e:
        ctx.error(e.key, e.message)
        return None


def _default_name(argv: list[str] | None, url: str | None) -> str:
    """The program's name or the URL's host, and a digest of the whole target: stable across
    reorderings of the file, and no secret of a URL's path (webhook keys) in the logs."""
    target = "\0".join(argv) if argv else str(url)
    digest = hashlib.sha256(target.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    label = PurePosixPath(argv[0]).name if argv else (urlsplit(str(url)).hostname or "url")
    return f"{label}#{digest}"
