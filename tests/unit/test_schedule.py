"""The onboard time-based schedule store (PUS service 11): release order, all-or-none
changes, durability across a reopen (a restarted link process), bounded size."""

import pytest

from flight.subsystems.link.schedule import MAX_ACTIVITIES, Activity, ScheduleFull, ScheduleStore, SCHEDULE_FILE


def _activity(release_s: float, request_id: int) -> Activity:
    return Activity(release_s, request_id, bytes([request_id & 0xFF]) * 12)


@pytest.fixture
def store(tmp_path):
    s = ScheduleStore(tmp_path / SCHEDULE_FILE)
    yield s
    s.close()


def test_due_activities_come_out_in_release_order_once(store):
    store.insert([_activity(30.0, 3), _activity(10.0, 1), _activity(20.0, 2)])
    assert store.next_release_utc_s() == 10.0
    assert store.pop_due(9.9) == []
    assert [a.request_id for a in store.pop_due(20.0)] == [1, 2]
    assert store.pop_due(20.0) == [], "released once"
    assert [a.request_id for a in store.activities()] == [3]


def test_the_schedule_survives_a_reopen_with_its_state(tmp_path, store):
    store.insert([_activity(50.0, 7), _activity(40.0, 8)])
    store.set_enabled(False)
    store.pop_due(45.0)
    reopened = ScheduleStore(tmp_path / SCHEDULE_FILE)
    try:
        assert reopened.activities() == [_activity(40.0, 8), _activity(50.0, 7)]
        assert reopened.enabled is False
        assert reopened.pop_due(100.0) == [], "a disabled schedule holds everything"
        reopened.set_enabled(True)
        assert [a.request_id for a in reopened.pop_due(100.0)] == [8, 7]
    finally:
        reopened.close()
    again = ScheduleStore(tmp_path / SCHEDULE_FILE)
    assert len(again) == 0 and again.enabled, "released activities are gone from the file too"
    again.close()


def test_changes_are_all_or_none(store):
    store.insert([_activity(10.0, 1)])
    with pytest.raises(KeyError):
        store.insert([_activity(20.0, 2), _activity(30.0, 1)])
    with pytest.raises(KeyError):
        store.insert([_activity(20.0, 5), _activity(30.0, 5)])
    with pytest.raises(KeyError):
        store.delete([1, 99])
    assert store.request_ids() == {1}
    store.delete([1])
    assert len(store) == 0


def test_the_schedule_is_bounded(store):
    store.insert([_activity(float(i), i) for i in range(MAX_ACTIVITIES - 1)])
    with pytest.raises(ScheduleFull):
        store.insert([_activity(1e6, 10_000), _activity(1e6, 10_001)])
    assert len(store) == MAX_ACTIVITIES - 1
    assert store.reset() == MAX_ACTIVITIES - 1 and len(store) == 0
