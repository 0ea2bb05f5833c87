"""A damaged SQLite file found at open (flight/core/storage.py): moved aside, named in
a note for the process to announce, a fresh one in its place; a sound file is left alone."""

import sqlite3

from flight.core import storage


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
