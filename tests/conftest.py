"""Shared fixtures: the reference corpus (optional) and generated files of every kind.

Parametrising over corpus files happens at collection time, when fixtures are not available,
so the corpus is also reachable through plain functions that never fail::

    @pytest.mark.corpus
    @pytest.mark.parametrize("path", corpus_exrs(), ids=corpus_id)
    def test_reads(path: Path) -> None: ...

With the corpus absent, ``corpus_exrs()`` is empty and pytest reports the test as skipped
("got empty parameter set").
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:  # so test modules can `import exrgen` in any layout
    sys.path.insert(0, str(TESTS_DIR))

from exrgen import write_all_kinds  # noqa: E402
from fake_systemd import FakeSystemd, socket_path  # noqa: E402

from exrwatchd.journal import Journal  # noqa: E402

CORPUS_ENV = "EXRWATCHD_CORPUS"
DEFAULT_CORPUS = TESTS_DIR.parents[1] / "shared" / "corpus" / "openexr-images"


def corpus_location() -> Path:
    """Where the corpus should be: ``$EXRWATCHD_CORPUS``, else ../shared/corpus/openexr-images."""
    env = os.environ.get(CORPUS_ENV)
    return Path(env).expanduser().resolve() if env else DEFAULT_CORPUS


def corpus_path() -> Path | None:
    """The corpus directory, or None when it is absent."""
    location = corpus_location()
    return location if location.is_dir() else None


def corpus_exr_files(corpus_dir: Path) -> list[Path]:
    """Every ``*.exr`` of the corpus outside ``Damaged/``, sorted."""
    damaged = corpus_dir / "Damaged"
    return sorted(
        p for p in corpus_dir.rglob("*.exr") if p.is_file() and not p.is_relative_to(damaged)
    )


def damaged_files(corpus_dir: Path) -> list[Path]:
    """Every file in ``Damaged/`` except its README.rst, sorted (names vary, not all .exr)."""
    damaged = corpus_dir / "Damaged"
    if not damaged.is_dir():
        return []
    return sorted(p for p in damaged.rglob("*") if p.is_file() and p.name != "README.rst")


def corpus_exrs() -> list[Path]:
    """``corpus_exr_files`` of the corpus, or [] when it is absent (safe at collection)."""
    root = corpus_path()
    return corpus_exr_files(root) if root else []


def corpus_damaged() -> list[Path]:
    """``damaged_files`` of the corpus, or [] when it is absent (safe at collection)."""
    root = corpus_path()
    return damaged_files(root) if root else []


def corpus_id(path: Path) -> str:
    """A parametrize id: the path relative to the corpus (``Beachball/multipart.0001.exr``)."""
    root = corpus_path()
    if root is not None and path.is_relative_to(root):
        return path.relative_to(root).as_posix()
    return path.name


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The reference corpus; skips the test when it is absent."""
    root = corpus_path()
    if root is None:
        pytest.skip(
            f"reference corpus not found at {corpus_location()}; "
            f"set {CORPUS_ENV} or clone ../shared"
        )
    return root


@pytest.fixture(scope="session")
def kinds_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One generated file of every kind (``exrgen.write_all_kinds``), name -> path, written
    once per session. Treat the files as read-only: copy before modifying."""
    return write_all_kinds(tmp_path_factory.mktemp("kinds"))


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[FakeSystemd]:
    """A fake systemd notification socket (tests/fake_systemd.py) for NOTIFY_SOCKET."""
    path, extra = socket_path(tmp_path)
    fake = FakeSystemd(path)
    yield fake
    fake.close()
    with contextlib.suppress(OSError):
        os.unlink(path)
    if extra is not None:
        extra.rmdir()


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    """A journal in tmp_path/state, closed after the test."""
    with Journal.open(tmp_path / "state") as opened:
        yield opened
