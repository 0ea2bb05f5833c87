"""``flight ground yamcs`` against ``flight run --speed realtime --contact always``, checked
through Yamcs' own REST API: housekeeping arrives as parameters stamped with the packet's
time, events with their severity, a command sent through Yamcs completes with its
verification stages, a failing one shows its failure code, an argument out of its XTCE
range is refused before anything is sent, a fault past a red limit raises an alarm, and
Ctrl-C leaves no process behind.

Yamcs is a Java server that takes tens of seconds to start: one run, one Yamcs for the module."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.support.predicates import FlightRun, alive, free_port, wait_until

pytestmark = pytest.mark.slow

yamcs = pytest.importorskip("flight.ground.yamcs", reason="the yamcs extra is not installed")
START_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 60.0


def yamcs_available() -> str | None:
    """Why Yamcs cannot run here, or None."""
    try:
        yamcs.find_java()
        yamcs.yamcs_jars()
    except yamcs.YamcsUnavailable as exc:
        return str(exc)
    return None


class MissionControlProcess:
    """``flight ground yamcs`` as an operator starts it, with its output in a file."""

    def __init__(self, run: FlightRun, tmp) -> None:
        self.http = f"127.0.0.1:{free_port()}"
        self.data = tmp / "yamcs"
        self.log = tmp / "flight-ground-yamcs.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "flight.cli", "ground", "--link", run.link, "yamcs", "--http", self.http,
                 "--data", str(self.data)],
                stdout=out, stderr=subprocess.STDOUT, env=run.env, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def children(self) -> dict[str, int]:
        """``{"gateway": pid, "Yamcs": pid}`` as it printed them."""
        return {name: int(pid) for name, pid in re.findall(r"^(gateway|Yamcs)\b.*?\(pid (\d+)\)", self.output(),
                                                            re.MULTILINE)}

    def api(self, path: str, body: dict | None = None):
        """``(HTTP status, JSON)`` of Yamcs' REST API at ``/api/<path>``."""
        request = urllib.request.Request(f"http://{self.http}/api/{path}", method="POST" if body is not None else "GET",
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def stop(self) -> int:
        """Ctrl-C, as a terminal delivers it (to the whole process group); its exit code."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise


@pytest.fixture(scope="module")
def mission(tmp_path_factory):
    if (why := yamcs_available()) is not None:
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("yamcs")
    with FlightRun(tmp, "--speed", "realtime", "--contact", "always", "--duration", "3000") as run:
        run.await_telemetry("link.contact", True, timeout_s=60)
        control = MissionControlProcess(run, tmp)
        try:
            wait_until(lambda: "mission control at" in control.output() or control.proc.poll() is not None,
                       "flight ground yamcs to print its URL", timeout_s=START_TIMEOUT_S)
            assert control.proc.poll() is None, control.output()
            yield run, control
        finally:
            control.stop()


def command(control, name: str, **args):
    """Send ``/rackflight/<name>`` through Yamcs; its command id."""
    status, body = control.api(f"processors/rackflight/realtime/commands/rackflight/{name}", {"args": args})
    assert status == 200, body
    return body["id"]


def history(control, command_id: str) -> dict:
    """The command's history attributes (name -> value as text)."""
    _, body = control.api("archive/rackflight/commands?limit=50")
    for entry in body.get("commands", []):
        if entry["id"] == command_id:
            return {a["name"]: str(next(iter(v for k, v in a["value"].items() if k != "type")))
                    for a in entry.get("attr", [])}
    return {}


def final(control, command_id: str, timeout_s: float = 90) -> dict:
    return wait_until(lambda: (h := history(control, command_id)).get("CommandComplete_Status") and h,
                      f"command {command_id} to complete or fail", timeout_s=timeout_s)


def test_housekeeping_arrives_as_parameters_stamped_with_their_packet_time(mission):
    _, control = mission
    path = "processors/rackflight/realtime/parameters/rackflight/power/battery_soc"
    first = wait_until(lambda: (r := control.api(path))[0] == 200 and "engValue" in r[1] and r[1],
                       "a value of /rackflight/power/battery_soc", timeout_s=60)
    assert 0.0 <= first["engValue"]["doubleValue"] <= 1.0
    assert [r["level"] for r in first["alarmRange"]] == ["WARNING", "CRITICAL"]
    second = wait_until(lambda: (r := control.api(path)[1])["generationTime"] != first["generationTime"] and r,
                        "the next housekeeping report", timeout_s=60)
    assert second["generationTime"] > first["generationTime"]
    # the generation time is the CDS time in the packet: the simulated UTC, not the wall clock
    _, utc = control.api("processors/rackflight/realtime/parameters/rackflight/hal/utc_unix_s")
    stamped = utc["generationTime"]
    onboard = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(utc["engValue"]["doubleValue"]))
    assert stamped.startswith(onboard[:16]), (stamped, onboard)


def test_a_command_completes_with_its_verification_stages_and_its_event_arrives(mission):
    _, control = mission
    attrs = final(control, command(control, "thermal/set_setpoint", setpoint_c=30))
    assert attrs["CommandComplete_Status"] == "OK", attrs
    for stage in ("Acceptance", "Start", "Completion"):
        assert attrs[f"Verifier_{stage}_Status"] == "OK", attrs

    def changed():
        _, body = control.api("archive/rackflight/events?limit=200")
        return next((e for e in body.get("events", []) if e["type"] == "thermal.setpoint_changed"), None)

    event = wait_until(changed, "the event thermal.setpoint_changed", timeout_s=30)
    assert event["severity"] == "INFO" and "30.0" in event["message"]


def test_a_failing_command_shows_its_failure_code(mission):
    _, control = mission
    attrs = final(control, command(control, "jobs/cancel", job_id=424242))
    assert attrs["CommandComplete_Status"] == "NOK"
    assert attrs["Verifier_Acceptance_Status"] == "OK"
    assert attrs["Verifier_Completion_Message"] in ("EXECUTION_ERROR", "VALIDATION_ERROR"), attrs


def test_an_argument_out_of_its_range_is_refused_and_nothing_is_sent(mission):
    _, control = mission
    _, before = control.api("archive/rackflight/commands?limit=200")
    status, body = control.api("processors/rackflight/realtime/commands/rackflight/thermal/set_setpoint",
                               {"args": {"setpoint_c": 500}})
    assert status == 400 and "not in the range [15.0,45.0]" in body["msg"], body
    _, after = control.api("archive/rackflight/commands?limit=200")
    assert len(after.get("commands", [])) == len(before.get("commands", []))


def test_a_fault_past_a_red_limit_raises_an_alarm_and_high_events_arrive_critical(mission):
    _, control = mission
    attrs = final(control, command(control, "hal/inject_fault", fault="sensor_noisy", value=100.0,
                                   target="coolant_supply_temp_c", duration_s=0.0))
    assert attrs["CommandComplete_Status"] == "OK", attrs

    def alarm():
        _, body = control.api("processors/rackflight/realtime/alarms")
        return next((a for a in body.get("alarms", [])
                     if a.get("id", {}).get("name") == "coolant_supply_temp_c"
                     and a["id"].get("namespace") == "/rackflight/hal"), None)

    found = wait_until(alarm, "an alarm on /rackflight/hal/coolant_supply_temp_c", timeout_s=60)
    assert found["severity"] == "CRITICAL", found


def test_ctrl_c_leaves_no_process(mission):
    """Runs last in the module: the fixture's teardown has not run yet, so stop it here."""
    _, control = mission
    children = control.children()
    assert set(children) == {"gateway", "Yamcs"}, control.output()
    assert control.stop() == 0, control.output()
    for name, pid in children.items():
        wait_until(lambda: not alive(pid), f"{name} (pid {pid}) to end", timeout_s=10)
    assert "stopping Yamcs and the gateway" in control.output()
