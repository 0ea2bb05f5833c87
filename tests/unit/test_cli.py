"""The `flight` command line: help that explains, bad arguments refused with a clear error,
the dictionary as strict JSON."""

import json
import subprocess
import sys
from pathlib import Path

import pytest


def flight(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flight.cli", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args", [(), ("run",), ("sim",), ("dict",), ("ground",), ("ground", "send")])
def test_help_explains_every_command(args):
    out = flight(*args, "--help")
    assert out.returncode == 0 and "usage:" in out.stdout and len(out.stdout.splitlines()) > 5


@pytest.mark.parametrize("args, why", [
    (("--speed", "0"), "speed"), (("--speed", "warp"), "speed"), (("--orbits", "-1"), "must be > 0"),
    (("--orbits", "1", "--duration", "5"), "not allowed with"), (("--link", "nohost"), "HOST:PORT"),
    (("--contact", "sometimes"), "invalid choice"),
])
def test_bad_run_arguments_are_refused_before_anything_starts(args, why, tmp_path):
    out = flight("run", "--data", str(tmp_path / "d"), *args)
    assert out.returncode == 2 and why in out.stderr
    assert not (tmp_path / "d").exists()


def test_an_unusable_tle_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.tle"
    bad.write_text("not a tle\n")
    out = flight("run", "--tle", str(bad), "--data", str(tmp_path / "d"))
    assert out.returncode == 1 and "cannot use TLE" in out.stderr


def test_dictionary_json_is_strict_and_complete():
    out = flight("dict", "--json")
    assert out.returncode == 0
    d = json.loads(out.stdout, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert {"exec", "hal", "power", "thermal", "jobs", "link"} <= set(d["components"])
    cmd = {c["name"]: c for comp in d["components"].values() for c in comp["commands"]}["thermal.set_setpoint"]
    assert cmd["args"] == [{"name": "setpoint_c", "type": "float", "units": "degC", "min": 15.0, "max": 45.0,
                            "choices": None, "doc": cmd["args"][0]["doc"]}]
    ev = {e["name"]: e for comp in d["components"].values() for e in comp["events"]}["jobs.job_completed"]
    assert ev["args"] == [{"name": "job_id", "type": "int", "units": "", "doc": ""},
                          {"name": "work_gpu_s", "type": "float", "units": "GPU-s", "doc": ""}]
    sensors = {f["name"]: f for f in d["hal"]["sensors"]}
    assert sensors["gpu_temp_c"]["shape"] == [72] and sensors["gpu_ecc_corrected"]["max"] is None


def test_dictionary_text_lists_commands_telemetry_events_and_hal_fields():
    out = flight("dict").stdout
    assert "thermal.set_setpoint" in out and "power.battery_soc" in out and "exec.process_died" in out
    assert "| `gpu_power_limit_w` |" in out


def test_dictionary_lists_the_wiring_as_text_and_json():
    text = flight("dict").stdout
    assert "data  thermal.headroom" in text and "thermal -> power, jobs" in text
    assert "gpu_headroom_w:float64[72] W" in text
    assert "owns  gpu_power_limit_w" in text and "power -> hal" in text
    wiring = json.loads(flight("dict", "--json").stdout)["wiring"]
    products = {p["name"]: p for p in wiring["products"]}
    assert products["power.energy_plan"]["publisher"] == "power" and products["power.energy_plan"]["readers"] == ["jobs"]
    assert {"field": "gpu_load_frac", "owner": "jobs"} in wiring["actuators"]


def test_dictionary_graph_names_every_data_product_and_its_readers():
    from flight.core.dictionary import full_dictionary

    out = flight("dict", "--graph")
    assert out.returncode == 0 and out.stdout.startswith("digraph wiring {") and out.stdout.rstrip().endswith("}")
    d = full_dictionary()
    assert d.products, "the stack declares data products"
    for qual in d.products:
        for reader in d.readers[qual]:
            assert f'"{d.publisher[qual]}" -> "{reader}" [label="{qual}"];' in out.stdout
    for field, owner in d.owners.items():
        assert f'"{owner}" -> "hal" [label="{field}", style=dashed];' in out.stdout
    assert flight("dict", "--graph", "--json").returncode == 2, "one output form at a time"
    committed = Path(__file__).resolve().parents[2] / "docs" / "wiring.dot"
    assert committed.read_text() == out.stdout, (
        "docs/wiring.dot (and the README's picture) lag the declarations: "
        "flight dict --graph > docs/wiring.dot && dot -Tpng -Gdpi=110 docs/wiring.dot -o docs/wiring.png")


def test_output_closed_by_its_reader_ends_the_command_quietly():
    # `flight dict --json | head -c 100`: the JSON (~150 kB) is more than a pipe holds, so
    # the command is still writing when the reader goes
    proc = subprocess.Popen([sys.executable, "-m", "flight.cli", "dict", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout.read(100).startswith(b"{")
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141, "128 + SIGPIPE, as a Unix filter cut short ends"
    assert err == b"", "no traceback"


def test_a_peer_that_has_gone_is_an_error_the_command_handles_not_a_silent_death():
    # After `flight ... main` has run, a write to a closed connection (a link that restarted
    # under the gateway, a Dask worker that died) must raise, not kill the process by SIGPIPE.
    code = ("import socket, sys\n"
            "from flight import cli\n"
            "try:\n    cli.main(['scenarios'])\nexcept SystemExit:\n    pass\n"
            "ours, theirs = socket.socketpair()\n"
            "theirs.close()\n"
            "try:\n    ours.sendall(b'TC')\nexcept BrokenPipeError:\n    print('peer gone', file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stderr) == (0, "peer gone\n")
