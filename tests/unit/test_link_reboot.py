"""Defects the reboot test (tests/integration/test_reboot_day.py) found in the link, each pinned
here at the unit level: the link driven directly (:class:`tests.support.link_harness.LinkHarness`)."""

from tests.support.link_harness import Ground, LinkHarness, _setpoint
from tests.support.predicates import wait_until


def test_a_tc_taken_before_the_first_frame_is_not_recovered_as_a_previous_runs(tmp_path):
    # in ``always`` contact the link takes TCs before its first frame; its first tick recovers the
    # TCs a previous process left in the pending store, and must not take this one for one of
    # them: an idempotent command would be sent on board again and completed twice
    harness = LinkHarness(tmp_path, contact="always", lab=True)
    try:
        harness.script = []  # in flight: its owner has not answered yet
        ground = Ground(harness)
        ground.send_tc(_setpoint(30.0))
        wait_until(lambda: harness.pump(0.01) or harness.commands, "the TC sent on board", 2, 0)
        assert len(harness.commands) == 1
        harness.frame()  # the first tick: recovery
        harness.frame()
        assert [(q, a) for _, q, a in harness.commands] == [("thermal.set_setpoint", {"setpoint_c": 30.0})]
        assert list(harness.link.verification.pending) == [harness.commands[0][0]]
        assert not harness.link.verification.pending[harness.commands[0][0]].recovered
        ground.close()
    finally:
        harness.close()
