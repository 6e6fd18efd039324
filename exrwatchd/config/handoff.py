"""A Config handed to a child process (the sink process) through its pipe.

The child must run on its parent's effective configuration, never on the file, which may
have been edited since (a restart-only key such as state_dir is kept at its running value
by a reload). `Secret` refuses pickling so that no general channel (a multiprocessing queue,
a cache) carries a credential by accident; this is the one deliberate channel: bytes for
the child's private pipe, not argv (`ps` shows it), not the environment (`/proc/<pid>/environ`,
inherited by every grandchild), not a file.
"""

from __future__ import annotations

import dataclasses
import pickle

from exrwatchd.config.model import Config
from exrwatchd.secrets import Secret

_KEYS = ("access_key", "secret_key")


def config_to_bytes(cfg: Config) -> bytes:
    """`cfg` as bytes for a child's pipe, the credentials included (and nowhere else)."""
    vast = cfg.vast
    # The hooks run in the parent (their tokens stay there): the child only ships records.
    bare = dataclasses.replace(
        cfg, vast=dataclasses.replace(vast, access_key=None, secret_key=None), hook=()
    )
    keys = {name: (s.reveal(), s.source) for name in _KEYS if (s := getattr(vast, name))}
    return pickle.dumps((bare, keys), protocol=pickle.HIGHEST_PROTOCOL)


def config_from_bytes(data: bytes) -> Config:
    """The Config `config_to_bytes` sent (from the parent, over a pipe only it holds)."""
    bare, keys = pickle.loads(data)
    if not isinstance(bare, Config):
        raise TypeError(f"expected a Config from the parent, got {type(bare).__name__}")
    secrets = {name: Secret(value, source) for name, (value, source) in keys.items()}
    return dataclasses.replace(bare, vast=dataclasses.replace(bare.vast, **secrets))
