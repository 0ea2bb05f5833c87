"""The tests' own predicates (tests/support/predicates.py): each says what it tests, they
compose, and a wait that times out names what it awaited."""

import time

import numpy as np
import pytest

from tests.support.predicates import (Event, as_predicate, at_least, count, equals, event_named, greater_than,
                                      less_than, satisfies, wait_until, within)


def ev(name="power.mode_changed", severity="INFO", message="NOMINAL -> SAFE: commanded", **args) -> Event:
    return Event(name, severity, message, args=args)


def test_value_predicates_hold_where_they_say_and_never_on_a_missing_value():
    assert within(0.3, 1.0)(0.3) and within(0.3, 1.0)(np.float64(1.0)) and not within(0.3, 1.0)(1.01)
    assert not within(0, 1)(None) and not greater_than(0)(None) and not at_least(0)("1")
    assert greater_than(2)(3) and not greater_than(2)(2) and at_least(2)(2) and less_than(2)(1)
    assert equals("SAFE")("SAFE") and not equals("SAFE")("NOMINAL")
    assert as_predicate(72)(72) and not as_predicate(72)(71) and as_predicate(within(0, 1))(0.5)
    assert satisfies(lambda v: v % 2 == 0, "even")(4)


def test_predicates_compose_and_read_like_the_domain():
    soc = within(0.3, 1.0) & ~equals(0.5)
    assert soc(0.4) and not soc(0.5) and not soc(0.2)
    assert (less_than(0) | greater_than(10))(11) and not (less_than(0) | greater_than(10))(5)
    assert str(within(0.3, 1.0)) == "within [0.3, 1]"
    assert str(soc) == "within [0.3, 1] and not equals 0.5"


def test_event_named_matches_name_severity_message_and_arguments():
    assert event_named("power.mode_changed")(ev())
    assert not event_named("power.mode_changed", severity="HIGH")(ev())
    assert event_named("power.mode_changed", message=r"NOMINAL -> SAFE")(ev())
    assert not event_named("power.mode_changed", message=r"SAFE")(ev()), "the message matches from its start"
    assert event_named("jobs.job_completed", job_id=7)(ev("jobs.job_completed", job_id=7))
    assert event_named("jobs.job_completed", job_id=greater_than(5))(ev("jobs.job_completed", job_id=7))
    assert not event_named("jobs.job_completed", job_id=7)(ev("jobs.job_completed")), "a missing argument fails"
    assert str(event_named("x.y", severity="HIGH", job_id=7)) == "event x.y, severity HIGH, job_id equals 7"


def test_count_counts_the_items_that_match():
    events = [ev("a.b"), ev("a.c"), ev("a.b")]
    assert count(2, event_named("a.b"))(events) and not count(3, event_named("a.b"))(events)
    assert count(equals(1), event_named("a.c"))(events) and count(3)(events)
    assert str(count(2, event_named("a.b"))) == "count at least 2 of event a.b"


def test_wait_until_returns_what_held_and_a_timeout_names_what_was_awaited():
    start = time.monotonic()
    assert wait_until(lambda: time.monotonic() - start > 0.05 and "done", "a moment", 5, 0.01) == "done"
    with pytest.raises(AssertionError, match=r"timed out after 0.05 s awaiting battery_soc within \[0.3, 1\]"):
        wait_until(lambda: None, f"battery_soc {within(0.3, 1.0)}", 0.05, 0.01)
    with pytest.raises(AssertionError, match="awaiting 3 events, 1 seen"):
        wait_until(lambda: None, lambda: "3 events, 1 seen", 0.01, 0.01)
