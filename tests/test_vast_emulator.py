"""The VAST emulator (tests/vast_emulator) driven by the REAL vastdb 2.1 SDK, end to end.

These tests pin both sides: that the emulator speaks the wire protocol the SDK expects, and
which SDK-side exception each server behaviour produces (../shared/docs/vastdb-facts.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import exrgen
import pyarrow as pa
import pytest
import requests
import vastdb
import vastdb.errors as verr
from vast_emulator import ROW_ID, TRANSACTION_CONFLICT, VastEmulator
from vastdb.config import BackoffConfig, QueryConfig, SessionConfig
from vastdb.session import Session

from exrwatchd.catalog import TABLES, build_rows, to_arrow
from exrwatchd.exr import inspect_path
from exrwatchd.pipeline import make_record

BUCKET, SCHEMA = "exrwatch", "catalog"
# Quick retries: the SDK's default expo backoff would wait seconds on every SlowDown.
FAST_BACKOFF = BackoffConfig(max_value=0.05, max_tries=4, max_time=5)


@pytest.fixture
def emu() -> Iterator[VastEmulator]:
    with VastEmulator(buckets={BUCKET}) as emulator:
        yield emulator


def connect(emu: VastEmulator, **kwargs: object) -> Session:
    options: dict[str, object] = {
        "timeout": (5, 5),
        "backoff_config": FAST_BACKOFF,
        "config": SessionConfig(data_endpoints=[emu.endpoint]),  # no VIP discovery
    }
    options.update(kwargs)
    return vastdb.connect(endpoint=emu.endpoint, access=emu.access_key, secret=emu.secret_key,
                          **options)  # fmt: skip


def create_catalog(session: Session) -> None:
    with session.transaction() as tx:
        schema = tx.bucket(BUCKET).create_schema(SCHEMA, fail_if_exists=False)
        for name, columns in TABLES.items():
            schema.create_table(name, columns, fail_if_exists=False)


@pytest.fixture(scope="module")
def catalog_rows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pa.Table]:
    """Realistic rows of all four tables: single/multi-part, deep, every attribute type, and
    an error record (null vectors)."""
    d = tmp_path_factory.mktemp("exr")
    junk = d / "junk.exr"
    junk.write_bytes(b"not an EXR file")
    paths: list[Path] = [
        exrgen.write_scanline(d / "shot.0001.exr"),
        exrgen.write_multipart(d / "multipart.exr"),
        exrgen.write_deep_scanline(d / "deep.exr"),
        exrgen.write_every_attribute_type(d / "attrs.exr").path,
        junk,
    ]
    return to_arrow([build_rows(make_record(inspect_path(str(p)))) for p in paths])


def select_all(session: Session, table: str, **kwargs: object) -> pa.Table:
    with session.transaction() as tx:
        t = tx.bucket(BUCKET).schema(SCHEMA).table(table)
        return t.select(**kwargs).read_all()


def test_handshake_and_credentials(emu: VastEmulator) -> None:
    session = connect(emu)
    assert session.api.vast_version == emu.version
    assert emu.requests[("GET", "transaction")] == 1
    with pytest.raises(verr.Forbidden):
        vastdb.connect(endpoint=emu.endpoint, access="intruder", secret=emu.secret_key)
    with pytest.raises(verr.Forbidden, match="SignatureDoesNotMatch"):
        vastdb.connect(endpoint=emu.endpoint, access=emu.access_key, secret="wrong")
    with session.transaction() as tx, pytest.raises(verr.MissingBucket):
        tx.bucket("no-such-bucket")


def test_catalog_tables_created_idempotently(emu: VastEmulator) -> None:
    session = connect(emu)
    create_catalog(session)
    assert emu.requests[("POST", "table")] == len(TABLES)
    create_catalog(session)  # everything exists now: nothing is created again
    assert emu.requests[("POST", "schema")] == 1
    assert emu.requests[("POST", "table")] == len(TABLES)
    with session.transaction() as tx:
        schema = tx.bucket(BUCKET).schema(SCHEMA)
        assert [t.name for t in schema.tables()] == sorted(TABLES)
        for name, columns in TABLES.items():
            assert schema.table(name).arrow_schema.equals(columns, check_metadata=True)
        with pytest.raises(verr.TableExists):
            schema.create_table("files", TABLES["files"])


def test_concurrent_catalog_creation_conflicts_once_then_converges(emu: VastEmulator) -> None:
    barrier = threading.Barrier(2)
    conflicts: list[str] = []
    failures: list[BaseException] = []

    def worker() -> None:
        session, first = connect(emu), True
        try:
            for _ in range(3):
                try:
                    with session.transaction() as tx:
                        if first:  # both transactions begin before either commits
                            first = False
                            barrier.wait(timeout=5)
                        schema = tx.bucket(BUCKET).create_schema(SCHEMA, fail_if_exists=False)
                        for name, columns in TABLES.items():
                            schema.create_table(name, columns, fail_if_exists=False)
                    return
                except verr.Conflict as exc:
                    conflicts.append(exc.code)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not failures
    assert conflicts == [TRANSACTION_CONFLICT]  # the second committer, once
    with connect(emu).transaction() as tx:
        assert [s.name for s in tx.bucket(BUCKET).schemas()] == [SCHEMA]
        assert sorted(tx.bucket(BUCKET).schema(SCHEMA).tablenames()) == sorted(TABLES)


def test_rows_round_trip_update_and_delete(
    emu: VastEmulator, catalog_rows: dict[str, pa.Table]
) -> None:
    session = connect(emu)
    create_catalog(session)
    with session.transaction() as tx:
        schema = tx.bucket(BUCKET).schema(SCHEMA)
        for name, rows in catalog_rows.items():
            ids = schema.table(name).insert(rows)
            assert ids.to_pylist() == list(range(rows.num_rows))  # fresh table: 0, 1, ...

    files = catalog_rows["files"]
    keys = files["file_path_normalized"].to_pylist()
    with session.transaction() as tx:
        t = tx.bucket(BUCKET).schema(SCHEMA).table("files")
        got = t.select(predicate=t["file_path_normalized"].isin(keys[:3]),
                       internal_row_id=True).read_all()  # fmt: skip
        assert got.column_names == [*files.column_names, ROW_ID]
        assert got.drop_columns([ROW_ID]).equals(files.slice(0, 3), check_metadata=False)
        assert got.schema.field("mtime").type == pa.timestamp("us", tz="UTC")
        # update by $row_id, within the same transaction the change is visible
        changed = got.select([ROW_ID, "inspection_count"]).set_column(
            1, "inspection_count", pa.array([7, 8, 9], pa.int64())
        )
        t.update(changed)
        again = t.select(columns=["inspection_count"],
                         predicate=t["file_path_normalized"] == keys[1]).read_all()  # fmt: skip
        assert again["inspection_count"].to_pylist() == [8]
        t.delete(got.slice(0, 1).select([ROW_ID]))

    for name, rows in catalog_rows.items():  # children: every value (vectors too) intact
        if name != "files":
            assert select_all(session, name).equals(rows, check_metadata=False)
    stored = select_all(session, "files")
    assert stored["file_path_normalized"].to_pylist() == keys[1:]
    assert stored["inspection_count"].to_pylist() == [8, 9, 1, 1]
    expected_vectors = files.slice(1)["metadata_embedding"]
    assert stored["metadata_embedding"].equals(expected_vectors)
    assert stored["metadata_embedding"].null_count == 1  # the error record


def test_predicates_projection_paging_and_add_column(emu: VastEmulator) -> None:
    session = connect(emu)
    names = [f"f{i:03d}" for i in range(50)]
    data = pa.table({
        "name": names,
        "n": pa.array(range(50), pa.int32()),
        "x": pa.array([None if i % 10 == 0 else i / 4 for i in range(50)], pa.float64()),
        "ok": [i % 2 == 0 for i in range(50)],
        "raw": pa.array([bytes([i]) for i in range(50)], pa.binary()),
    })  # fmt: skip
    with session.transaction() as tx:
        t = tx.bucket(BUCKET).create_schema("p").create_table("t", data.schema)
        t.insert(data)

        def count(predicate: object, **kwargs: object) -> int:
            reader = t.select(columns=["n"], predicate=predicate, **kwargs)
            return int(reader.read_all().num_rows)

        assert count(t["n"] == 3) == 1
        assert count(t["n"] != 3) == 49
        assert count((t["n"] >= 10) & (t["n"] < 20)) == 10
        assert count(t["n"].between(5, 9)) == 5
        assert count(t["x"].isnull()) == 5
        assert count(t["name"].startswith("f01")) == 10
        assert count(t["name"].contains("4")) == 14
        assert count((t["n"] == 1) | (t["n"] == 2) | (t["n"] > 47)) == 4
        assert count(t["ok"] == True) == 25  # noqa: E712 (an ibis expression)
        assert count(t["raw"] == bytes([7])) == 1
        assert count(t["name"].isin(names[::7])) == 8
        assert count(None, limit_rows=5) == 5
        # several sub-splits and small pages: the SDK asks again until all are done
        emu.reset_requests()
        paged = t.select(config=QueryConfig(num_sub_splits=3, limit_rows_per_sub_split=7))
        assert paged.read_all().sort_by("n").equals(data)
        assert emu.requests[("GET", "data")] == 8  # ceil(50 / 7) pages of sub-split 0
        t.add_column(pa.schema([pa.field("extra", pa.string())]))
        assert t.select(columns=["extra"]).read_all()["extra"].null_count == 50


def test_snapshot_isolation(emu: VastEmulator, catalog_rows: dict[str, pa.Table]) -> None:
    session = connect(emu)
    create_catalog(session)
    tx_a, tx_b = session.transaction(), session.transaction()
    tx_a.__enter__()
    tx_b.__enter__()
    files_a = tx_a.bucket(BUCKET).schema(SCHEMA).table("files")
    files_b = tx_b.bucket(BUCKET).schema(SCHEMA).table("files")
    files_a.insert(catalog_rows["files"])
    assert files_a.select(columns=["file_id"]).read_all().num_rows == 5  # its own writes
    assert files_b.select(columns=["file_id"]).read_all().num_rows == 0  # A uncommitted
    tx_a.__exit__(None, None, None)
    assert files_b.select(columns=["file_id"]).read_all().num_rows == 0  # B's snapshot
    tx_b.__exit__(None, None, None)  # B wrote nothing: no conflict
    assert select_all(session, "files").num_rows == 5  # a new transaction sees A's rows


def test_write_write_conflict_first_committer_wins(
    emu: VastEmulator, catalog_rows: dict[str, pa.Table]
) -> None:
    session = connect(emu)
    create_catalog(session)
    rows = catalog_rows["files"]
    tx_a, tx_b = session.transaction(), session.transaction()
    tx_a.__enter__()
    tx_b.__enter__()
    tx_a.bucket(BUCKET).schema(SCHEMA).table("files").insert(rows.slice(0, 2))
    tx_b.bucket(BUCKET).schema(SCHEMA).table("files").insert(rows.slice(2, 3))
    tx_a.__exit__(None, None, None)
    with pytest.raises(verr.Conflict) as raised:
        tx_b.__exit__(None, None, None)
    assert raised.value.status == 409
    assert raised.value.code == TRANSACTION_CONFLICT
    stored = select_all(session, "files")
    assert stored["file_id"].to_pylist() == rows["file_id"].to_pylist()[:2]
    assert emu.store.active_transactions() == 0


def test_http_error_faults(emu: VastEmulator) -> None:
    session = connect(emu)
    emu.fail_next(2, status=503, code="SlowDown")  # retried by the SDK itself
    with session.transaction() as tx:
        tx.bucket(BUCKET)
    assert emu.requests[("POST", "transaction")] == 3
    emu.fail_next(1, status=503, code="ServiceUnavailable")
    with pytest.raises(verr.ServiceUnavailable) as unavailable:
        session.transaction().__enter__()
    assert not isinstance(unavailable.value, verr.Slowdown)
    emu.fail_next(1, status=500, code="InternalServerError")
    with pytest.raises(verr.InternalServerError):
        session.transaction().__enter__()
    for status in (429, 502, 504):
        emu.fail_next(1, status=status, code="")
        with pytest.raises(ValueError, match="not a valid HttpStatus") as plain:
            session.transaction().__enter__()
        assert not isinstance(plain.value, verr.HttpError)
    emu.fail_next(1, status=503, code="ServiceUnavailable", command="rows")  # filtered fault
    with session.transaction() as tx:
        tx.bucket(BUCKET).create_schema("s")  # unaffected: not a ?rows request
    assert len(emu.faults.pending()) == 1


def test_connection_reset_around_commit(
    emu: VastEmulator, catalog_rows: dict[str, pa.Table]
) -> None:
    session = connect(emu)
    create_catalog(session)
    rows = catalog_rows["files"]

    emu.reset_connection("before_commit")
    with pytest.raises(verr.ConnectionError) as before, session.transaction() as tx:
        tx.bucket(BUCKET).schema(SCHEMA).table("files").insert(rows.slice(0, 1))
    assert before.value.may_retry is False  # a PUT: the SDK never retries it
    assert isinstance(before.value.cause, requests.ConnectionError)
    assert select_all(session, "files").num_rows == 0  # not applied

    emu.reset_connection("after_commit")
    with pytest.raises(verr.ConnectionError), session.transaction() as tx:
        tx.bucket(BUCKET).schema(SCHEMA).table("files").insert(rows.slice(0, 1))
    assert select_all(session, "files").num_rows == 1  # applied although the client failed

    emu.reset_requests()
    emu.reset_connection("before_request", command="stats")  # a GET: the SDK retries it
    assert select_all(session, "files").num_rows == 1
    assert emu.requests[("GET", "stats")] == 4  # 3 as usual + the retry


def test_held_beyond_read_timeout(emu: VastEmulator) -> None:
    session = connect(emu, timeout=(2, 0.3))
    # Held, not delayed: only the read timeout can end the call, however loaded the machine.
    release = emu.hold(command="transaction", method="POST")
    backstop = threading.Timer(10.0, release.set)  # without the timeout: fail, not hang
    backstop.start()
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):  # not wrapped by the SDK
        session.transaction().__enter__()
    # The read timeout ended it, not a reply: a retried POST would have been answered.
    assert time.monotonic() - started < 10
    release.set()
    backstop.cancel()
    with session.transaction() as tx:  # the next request is served normally
        tx.bucket(BUCKET)


def test_down_and_up_keep_state(emu: VastEmulator) -> None:
    session = connect(emu)
    with session.transaction() as tx:
        tx.bucket(BUCKET).create_schema("kept")
    port = emu.port
    emu.down()
    with pytest.raises(verr.ConnectionError) as refused:
        session.transaction().__enter__()
    assert isinstance(refused.value.cause, requests.ConnectionError)
    with pytest.raises(verr.ConnectionError):  # a GET: retried until max_tries, then raised
        connect(emu, backoff_config=BackoffConfig(max_tries=2, max_value=0.05))
    emu.up()
    assert emu.port == port
    with session.transaction() as tx:  # the same session reconnects by itself
        assert tx.bucket(BUCKET).schema("kept") is not None


def test_rejected_rows_fail_the_insert_naming_the_row(
    emu: VastEmulator, catalog_rows: dict[str, pa.Table]
) -> None:
    session = connect(emu)
    create_catalog(session)
    files = catalog_rows["files"]
    bad_path = files["file_path"][3].as_py()
    emu.reject_rows(lambda row: row.get("file_path") == bad_path)
    with pytest.raises(verr.BadRequest, match="row 3") as raised, session.transaction() as tx:
        tx.bucket(BUCKET).schema(SCHEMA).table("files").insert(files)
    assert bad_path in raised.value.message
    assert select_all(session, "files").num_rows == 0  # the transaction rolled back
    emu.reject_rows(None)
    create_catalog(session)
    with session.transaction() as tx:
        tx.bucket(BUCKET).schema(SCHEMA).table("files").insert(files)


def test_request_count_of_a_minimal_flow(emu: VastEmulator) -> None:
    data = pa.table({"k": ["a", "b"], "v": pa.array([1, 2], pa.int64())})
    emu.reset_requests()
    session = connect(emu)
    with session.transaction() as tx:
        schema = tx.bucket(BUCKET).create_schema("m")
        t = schema.create_table("t", data.schema)
        t.insert(data)
        assert t.select(predicate=t["k"] == "a").read_all().num_rows == 1
    assert emu.total_requests == 16
    assert emu.requests == {
        ("GET", "transaction"): 1,  # version handshake
        ("POST", "transaction"): 1,
        ("HEAD", ""): 1,  # tx.bucket()
        ("GET", "schema"): 2,  # create_schema: exists?, then fetch it back
        ("POST", "schema"): 1,
        ("GET", "table"): 2,  # create_table: exists?, then open it
        ("POST", "table"): 1,
        ("GET", "column"): 1,
        ("GET", "stats"): 3,  # opening the table, then Table.stats twice in select()
        ("POST", "rows"): 1,
        ("GET", "data"): 1,
        ("PUT", "transaction"): 1,
    }
