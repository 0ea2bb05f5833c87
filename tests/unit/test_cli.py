"""The `flight` command line: help that explains, bad arguments refused with a clear error,
the dictionary as strict JSON."""

import json
import subprocess
import sys

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
    sensors = {f["name"]: f for f in d["hal"]["sensors"]}
    assert sensors["gpu_temp_c"]["shape"] == [72] and sensors["gpu_ecc_corrected"]["max"] is None


def test_dictionary_text_lists_commands_telemetry_events_and_hal_fields():
    out = flight("dict").stdout
    assert "thermal.set_setpoint" in out and "power.battery_soc" in out and "exec.process_died" in out
    assert "| `gpu_power_limit_w` |" in out
