"""A damaged SQLite file found at open (flight/core/storage.py): moved aside, named in
a note for the process to announce, a fresh one in its place; a sound file is left alone.
A mirrored store (the security state) rebuilds a damaged copy from the other."""

import sqlite3

import pytest

from flight.core import storage
from tests.support.storage import damage_header


def make_db(path, rows: int = 2000) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    db.executemany("INSERT INTO t VALUES (?, ?)", ((i, "x" * 200) for i in range(rows)))
    db.commit()
    db.close()


def test_a_sound_file_is_opened_as_it_is(tmp_path):
    make_db(tmp_path / "a.sqlite")
    db = storage.connect_checked(tmp_path / "a.sqlite")
    assert db.execute("SELECT count(*) FROM t").fetchone() == (2000,)
    assert storage.take_moved_aside() == []


def test_a_file_that_is_not_a_database_is_moved_aside_and_a_fresh_one_made(tmp_path):
    path = tmp_path / "jobs.sqlite"
    make_db(path)
    with open(path, "r+b") as f:
        f.write(b"\x00garbage" * 16)
    db = storage.connect_checked(path)
    assert db.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)  # fresh
    (moved,) = storage.take_moved_aside()
    assert moved.path == path and moved.moved_to.name.startswith("jobs.sqlite.corrupt-")
    assert "not a database" in moved.why
    assert moved.moved_to.read_bytes().startswith(b"\x00garbage")


def test_damage_inside_the_file_is_found_by_quick_check(tmp_path):
    path = tmp_path / "schedule.sqlite"
    make_db(path)
    data = bytearray(path.read_bytes())
    page = 4096
    data[3 * page: 3 * page + 64] = b"\xff" * 64  # a b-tree page header of the table
    path.write_bytes(bytes(data))
    db = storage.open_durable(path)
    db.execute("CREATE TABLE fresh (x)")
    (moved,) = storage.take_moved_aside()
    assert moved.path == path and moved.why


# -- a mirrored store (security state): a damaged copy is rebuilt from the other ------------------
SCHEMA = ("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT)",)


def mirrored(path, rows: int) -> None:
    store = storage.MirroredStore(path, SCHEMA)
    for k in range(rows):
        store.write("INSERT INTO t VALUES (?, ?)", (k, f"v{k}"))
    store.close()


def rows_of(path) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT k, v FROM t ORDER BY k").fetchall()
    finally:
        db.close()


@pytest.mark.parametrize("which", ["file", "mirror"])
def test_a_damaged_copy_is_rebuilt_from_the_other_and_named_as_restored(tmp_path, which):
    path = tmp_path / "link_keys.sqlite"
    mirror = storage.mirror_path(path)
    assert mirror.name == "link_keys.mirror.sqlite"
    mirrored(path, 5)
    damaged, other = (path, mirror) if which == "file" else (mirror, path)
    damage_header(damaged)
    store = storage.MirroredStore(path, SCHEMA)
    assert not store.lost
    assert store.db.execute("SELECT count(*) FROM t").fetchone() == (5,)
    (moved,) = storage.take_moved_aside()
    assert moved.path == damaged and moved.restored_from == other
    assert moved.outcome() == f"restored from its mirror {other.name}: nothing was lost"
    store.write("INSERT INTO t VALUES (?, ?)", (5, "v5"))  # both copies take changes again
    store.close()
    assert rows_of(path) == rows_of(mirror) == [(k, f"v{k}") for k in range(6)]


def test_a_change_a_crash_left_out_of_one_copy_is_rebuilt_from_the_other(tmp_path):
    path = tmp_path / "link_replay.sqlite"
    mirrored(path, 3)
    behind = sqlite3.connect(storage.mirror_path(path))  # as if the power went between the two commits
    with behind:
        behind.execute("DELETE FROM t WHERE k = 2")
        behind.execute("UPDATE mirror_generation SET n = n - 1")
    behind.close()
    storage.MirroredStore(path, SCHEMA).close()
    assert rows_of(storage.mirror_path(path)) == rows_of(path) == [(0, "v0"), (1, "v1"), (2, "v2")]
    assert storage.take_moved_aside() == []


def test_a_mirror_that_cannot_take_a_change_is_counted_and_rebuilt_at_the_next_open(tmp_path):
    path = tmp_path / "s.sqlite"
    store = storage.MirroredStore(path, SCHEMA)
    store.write("INSERT INTO t VALUES (?, ?)", (0, "v0"))
    store.mirror.execute("DROP TABLE t")
    store.write("INSERT INTO t VALUES (?, ?)", (1, "v1"))  # the file has it: no error
    assert store.mirror_failures == 1
    store.close()
    storage.MirroredStore(path, SCHEMA).close()
    assert rows_of(storage.mirror_path(path)) == [(0, "v0"), (1, "v1")]


def test_a_store_kept_once_before_gets_its_mirror_and_a_file_with_no_copy_left_is_lost(tmp_path):
    path = tmp_path / "old.sqlite"
    make_db(path, rows=3)  # from before mirrors: one file
    store = storage.MirroredStore(path)
    assert not store.lost
    store.close()
    assert rows_of(storage.mirror_path(path)) == rows_of(path) and len(rows_of(path)) == 3
    damage_header(path)
    damage_header(storage.mirror_path(path))
    store = storage.MirroredStore(path, SCHEMA)
    assert store.lost and store.db.execute("SELECT count(*) FROM t").fetchone() == (0,)
    moved = storage.take_moved_aside()
    assert {m.path for m in moved} == {path, storage.mirror_path(path)}
    assert all(m.restored_from is None and "is lost" in m.outcome() for m in moved)
    store.close()
