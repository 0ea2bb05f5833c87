"""tools/bench_link.py measures what it says: every housekeeping packet it times through the
link reaches the ground process's archive, and the raw baseline's reader gets every byte
(the timings themselves are the benchmark's business, not a test's)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import bench_link  # noqa: E402


def test_the_link_pipeline_archives_every_packet_it_times_and_the_baseline_reads_every_byte(tmp_path):
    components = len([c for c in bench_link.full_dictionary().components.values() if c.name != "link"])
    link = bench_link.bench_link(20, tmp_path)
    assert link.packets == 20 * components
    assert link.wall_s > 0 and link.sender_cpu_s > 0 and link.receiver_cpu_s > 0
    raw = bench_link.bench_raw(20)  # asserts itself that the reader got every byte sent
    assert raw.packets == 20 * components
