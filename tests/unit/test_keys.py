"""Ground-station key files (flight.spacelink.keys): where they live, how they are created
(random, 0600, next free SPI, never overwritten), and what is refused when loading."""

import json
import stat

import pytest

from flight.spacelink import keys


def test_the_key_directory_is_explicit_then_environment_then_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv(keys.ENV_VAR, str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert keys.keys_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert keys.keys_dir() == tmp_path / "env"
    monkeypatch.delenv(keys.ENV_VAR)
    assert keys.keys_dir() == tmp_path / "xdg" / "rackflight" / "keys"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert keys.keys_dir() == tmp_path / "home" / ".config" / "rackflight" / "keys"


def test_created_keys_are_random_private_and_take_the_next_spi(tmp_path):
    a = keys.create_key(tmp_path / "k", "alpha")
    b = keys.create_key(tmp_path / "k", "bravo")
    c = keys.create_key(tmp_path / "k", "charlie", spi=40)
    d = keys.create_key(tmp_path / "k", "delta")
    assert [k.spi for k in (a, b, c, d)] == [1, 2, 40, 41]
    assert len({k.key for k in (a, b, c, d)}) == 4 and all(len(k.key) == 32 for k in (a, b, c, d))
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o700
    for k in (a, b, c, d):
        path = keys.key_path(tmp_path / "k", k.station)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert keys.read_key(path) == k
    assert keys.load_all(tmp_path / "k") == {1: a, 2: b, 40: c, 41: d}
    assert keys.load_key(tmp_path / "k", "bravo") == b


def test_an_existing_key_is_never_overwritten(tmp_path):
    first = keys.create_key(tmp_path, "alpha")
    with pytest.raises(FileExistsError):
        keys.create_key(tmp_path, "alpha")
    assert keys.load_key(tmp_path, "alpha") == first


@pytest.mark.parametrize("station", ["", "a/b", "../x", "with space", "x" * 65])
def test_bad_station_names_are_refused(tmp_path, station):
    with pytest.raises(ValueError, match="station name"):
        keys.create_key(tmp_path, station)


def test_spis_must_be_in_range_and_unique(tmp_path):
    keys.create_key(tmp_path, "alpha")
    for spi in (0, 1, 65536):
        with pytest.raises(ValueError, match="SPI"):
            keys.create_key(tmp_path, "bravo", spi=spi)


def test_loading_refuses_open_permissions_bad_files_and_shared_spis(tmp_path):
    key = keys.create_key(tmp_path, "alpha")
    path = keys.key_path(tmp_path, "alpha")
    path.chmod(0o644)
    with pytest.raises(ValueError, match="readable by others"):
        keys.read_key(path)
    path.chmod(0o600)
    twin = keys.key_path(tmp_path, "twin")
    twin.write_text(json.dumps({"station": "twin", "spi": key.spi, "key": "00" * 32}))
    twin.chmod(0o600)
    with pytest.raises(ValueError, match="share SPI"):
        keys.load_all(tmp_path)
    for text in ("not json", json.dumps({"station": "t", "spi": 3, "key": "00" * 31}), json.dumps({"spi": 3})):
        twin.write_text(text)
        with pytest.raises(ValueError, match="not a station key file"):
            keys.read_key(twin)


def test_the_local_key_is_created_only_where_there_is_none(tmp_path):
    created = keys.ensure_local_key(tmp_path / "fresh")
    assert created.station == keys.LOCAL_STATION and created.spi == 1
    assert keys.ensure_local_key(tmp_path / "fresh") is None
    keys.create_key(tmp_path / "deployed", "svalbard")
    assert keys.ensure_local_key(tmp_path / "deployed") is None  # a deployment's own keys are enough
    assert not keys.key_path(tmp_path / "deployed", keys.LOCAL_STATION).exists()


def test_key_encryption_keys_are_private_files_with_increasing_ids_never_overwritten(tmp_path):
    first = keys.create_kek(tmp_path / "k")
    second = keys.create_kek(tmp_path / "k", "backup")
    assert (first.name, first.kek_id, second.kek_id) == (keys.LOCAL_KEK, 1, 2)
    path = keys.key_path(tmp_path / "k", "backup", keys.KEK_SUFFIX)
    assert path.name == "backup.kek" and path.stat().st_mode & 0o777 == 0o600
    assert keys.load_keks(tmp_path / "k") == {1: first, 2: second}
    assert keys.load_kek(tmp_path / "k", "backup") == second and second.key.hex() not in repr(second)
    with pytest.raises(FileExistsError):
        keys.create_kek(tmp_path / "k", "backup")
    assert keys.load_all(tmp_path / "k") == {}  # station keys and key-encryption keys stay apart
    path.chmod(0o644)
    with pytest.raises(ValueError, match="readable by others"):
        keys.load_keks(tmp_path / "k")


def test_flight_run_creates_a_key_encryption_key_only_where_there_is_none(tmp_path):
    assert keys.ensure_local_kek(tmp_path / "fresh").kek_id == 1
    assert keys.ensure_local_kek(tmp_path / "fresh") is None
    keys.create_kek(tmp_path / "deployed", "mission")
    assert keys.ensure_local_kek(tmp_path / "deployed") is None
