"""Credentials: where they come from, and a holder that never prints them.

Kept apart from config.py so the one place that touches secret bytes is small enough to
audit. Nothing here ever puts a secret value into an exception message or a warning.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

MASK = "********"

#: The VAST SDK's family of variables (VAST_DB_ACCESS_KEY, ...): never left for a child.
ENV_PREFIX = "VAST_DB_"

#: A credential file larger than this is almost certainly the wrong file; refusing it
#: avoids reading a multi-gigabyte mistake into memory.
MAX_SECRET_BYTES = 64 * 1024


class Secret:
    """A secret value plus a description of where it came from.

    Deliberately not a dataclass: ``dataclasses.asdict`` and ``replace`` recurse into
    dataclass fields and would copy the value out into plain dicts.
    """

    __slots__ = ("_value", "source")

    _value: str
    source: str

    def __init__(self, value: str, source: str) -> None:
        object.__setattr__(self, "_value", value)
        object.__setattr__(self, "source", source)

    def reveal(self) -> str:
        return self._value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Secret is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Secret is immutable")

    def __repr__(self) -> str:
        return f"Secret({MASK}, from {self.source})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return self._value == other._value and self.source == other.source

    def __hash__(self) -> int:
        return hash((self._value, self.source))

    def __reduce__(self) -> Any:
        # Pickling would be an unmasked channel out of the process (multiprocessing
        # queues, caches); nobody needs it, so make it loud.
        raise TypeError("Secret cannot be pickled")


class CredentialError(ValueError):
    """A credential source exists but cannot be used; `key` is the config key path to blame.

    Internal: config.py turns it into one line of its ConfigError.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def read_secret_file(path: Path, key: str, what: str) -> str:
    """Read one credential file: UTF-8, trailing newline stripped, never echoed."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SECRET_BYTES + 1)
    except OSError as e:
        raise CredentialError(key, f'cannot read {what} "{path}": {e.strerror}') from None
    if len(data) > MAX_SECRET_BYTES:
        raise CredentialError(
            key, f'{what} "{path}" is larger than {MAX_SECRET_BYTES // 1024} KiB; wrong file?'
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # The decode error message quotes the offending byte, which is part of the secret.
        raise CredentialError(key, f'{what} "{path}" is not valid UTF-8') from None
    value = text.rstrip("\r\n")
    if not value:
        raise CredentialError(key, f'{what} "{path}" is empty')
    return value


def resolve_credential(
    name: str,
    *,
    file: Path | None,
    env_var: str,
    plain: str | None,
    config_name: str,
    environ: Mapping[str, str],
) -> Secret | None:
    """Find credential `name` (``access_key`` / ``secret_key``) in precedence order.

    1. ``vast.<name>_file`` from the config,
    2. ``$CREDENTIALS_DIRECTORY/vast_<name>`` (systemd ``LoadCredential=``), if present,
    3. the environment variable `env_var`,
    4. the plain value in the config file.

    Returns None when no source has it; raises CredentialError when a source that was
    asked for (a configured file, an existing credential file) cannot be read.
    """
    if file is not None:
        value = read_secret_file(file, f"vast.{name}_file", "file")
        return Secret(value, f"file {file}")

    cred_dir = environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        cred = Path(cred_dir) / f"vast_{name}"
        if os.path.lexists(cred):
            value = read_secret_file(cred, f"vast.{name}", "systemd credential")
            return Secret(value, f"$CREDENTIALS_DIRECTORY/vast_{name}")

    # An empty variable is how unit files and shells "unset" things; treat it as absent.
    env_value = environ.get(env_var)
    if env_value:
        return Secret(env_value, f"env {env_var}")

    if plain is not None:
        return Secret(plain, f"plain text in {config_name}")
    return None


def credential_sources(name: str, env_var: str) -> str:
    """Every place credential `name` could come from, for a "required" error."""
    return (
        f"vast.{name}_file, $CREDENTIALS_DIRECTORY/vast_{name} (systemd LoadCredential=), "
        f"env {env_var}, or vast.{name}"
    )


def plaintext_warning(name: str, config_name: str, mode: int | None) -> str:
    """The warning for a secret written straight into the config file."""
    if mode is not None and mode & 0o077:
        return (
            f"vast.{name} is stored in plain text in {config_name}, which is readable by "
            f"group/others (mode {mode & 0o777:04o}); chmod 600 it or use {name}_file / "
            "LoadCredential"
        )
    return (
        f"vast.{name} is stored in plain text in {config_name}; prefer {name}_file or "
        "LoadCredential so the config file can be shared and versioned"
    )


def withdraw_from_environ(
    secrets: Iterable[str], environ: MutableMapping[str, str] = os.environ
) -> dict[str, str]:
    """Take every ``VAST_DB_*`` variable, and every variable holding one of `secrets` (a
    renamed ``access_key_env``), out of `environ`; return them.

    A child process inherits the environment as it is when spawned, and anything that can
    read its ``/proc/<pid>/environ`` reads them there. Once the credentials are resolved,
    the process needs them in its Config only (the removed variables, for a reload to
    resolve them again), so no child it starts ever holds them.
    """
    values = set(secrets)
    names = [k for k, v in environ.items() if k.startswith(ENV_PREFIX) or v in values]
    return {name: environ.pop(name) for name in names}
