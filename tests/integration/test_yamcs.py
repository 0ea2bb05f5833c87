"""``flight ground yamcs`` against ``flight run --speed realtime --contact always``, checked
through Yamcs' own REST API: housekeeping arrives as parameters stamped with the packet's
time, and housekeeping the satellite stored before Yamcs started comes down from the backlog
into Yamcs' archive at its onboard time, events with their severity, a command sent through Yamcs completes with its
verification stages, a failing one shows its failure code, an argument out of its XTCE
range is refused before anything is sent, a fault past a red limit raises an alarm, and
Ctrl-C leaves no process behind.

Yamcs is a Java server that takes tens of seconds to start: one run, one Yamcs for the module."""

import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

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
        self.onboard_utc_before_s = run.await_next_housekeeping("hal", timeout_s=60)["utc_unix_s"]
        """Onboard UTC of a housekeeping sample taken before any ground connected (Unix s)."""
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
    stamped = datetime.datetime.fromisoformat(utc["generationTime"].replace("Z", "+00:00")).timestamp()
    assert abs(stamped - utc["engValue"]["doubleValue"]) < 1.0, utc
    assert abs(stamped - time.time()) > 86400, "the scenario's epoch, not today"


def _unix_s(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _iso(unix_s: float) -> str:
    return datetime.datetime.fromtimestamp(unix_s, datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def test_housekeeping_stored_before_yamcs_started_comes_from_the_backlog_at_its_onboard_time(mission):
    """The run flew before the gateway and Yamcs existed; its housekeeping waited on board in
    the packet stores, and the gateway's playback brought it down once Yamcs connected."""
    _, control = mission
    before_s = control.onboard_utc_before_s
    window = f"start={_iso(before_s - 3600)}&stop={_iso(before_s + 0.001)}&limit=1000&order=asc"
    path = "archive/rackflight/parameters/rackflight/power/battery_soc"

    def archived():
        """Its values in that hour, decoded from the packets Yamcs archived (``replay``: the TM
        archive, which files each packet by its generation time)."""
        status, body = control.api(f"{path}?{window}&source=replay")
        return status == 200 and body.get("parameter") and body["parameter"]

    values = wait_until(archived, "battery_soc sampled before Yamcs started, in its archive", timeout_s=120)
    stamped = [_unix_s(v["generationTime"]) for v in values]
    assert all(before_s - 3600 <= t <= before_s + 0.001 for t in stamped), stamped
    assert abs(stamped[0] - time.time()) > 86400, "the scenario's epoch, not the wall clock"
    assert all(0.0 <= v["engValue"]["doubleValue"] <= 1.0 for v in values)


def test_yamcs_loads_the_database_and_the_link_without_warnings(mission):
    _, control = mission
    log = (control.data / "yamcs.log").read_text(errors="replace")
    assert "XTCE file parsing finished" in log and "Link established" in log
    # Yamcs' console log colours WARNING yellow and SEVERE red. Its realtime parameter archive
    # filler warns when a packet is older than what it has seen (played-back backlog after real
    # time): about arrival order, not our definitions; the TM archive files those packets by
    # their time all the same
    out_of_order = re.compile(r"RealtimeArchiveFiller.*(Time jumped in the past|Dropping old data)")
    problems = [line for line in log.splitlines() if ("\x1b[0;33m" in line or "\x1b[0;31m" in line)
                and not out_of_order.search(line)]
    assert problems == [], problems[:5]


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
    assert event["severity"] == "INFO" and event["source"] == "thermal" and "30.0" in event["message"]


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


def test_a_fault_past_a_red_limit_raises_a_critical_alarm(mission):
    _, control = mission
    attrs = final(control, command(control, "hal/inject_fault", fault="sensor_noisy", value=100.0,
                                   target="coolant_supply_temp_c", duration_s=0.0))
    assert attrs["CommandComplete_Status"] == "OK", attrs

    def critical():
        """The alarm on it once CRITICAL: a first reading may fall between the yellow and red limits."""
        _, body = control.api("processors/rackflight/realtime/alarms")
        return next((a for a in body.get("alarms", []) if a.get("id", {}).get("name") == "coolant_supply_temp_c"
                     and a["id"].get("namespace") == "/rackflight/hal" and a.get("severity") == "CRITICAL"), None)

    wait_until(critical, "a CRITICAL alarm on /rackflight/hal/coolant_supply_temp_c", timeout_s=90)


# -- the web UI, in real headless Chromium ------------------------------------------------------
INSTANCE_QUERY = "?c=rackflight__realtime"
ARTIFACTS = Path(os.environ.get("RACKFLIGHT_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
"""Where the browser tests leave their screenshots (CI keeps the directory)."""


def chromium() -> str | None:
    """A Chromium to drive: ``$RACKFLIGHT_CHROMIUM`` or Debian's ``chromium`` (Playwright's own
    browser download needs the internet)."""
    return os.environ.get("RACKFLIGHT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser(mission):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra has it)")
    if (executable := chromium()) is None:
        pytest.skip("no Chromium to drive: apt-get install chromium (or set RACKFLIGHT_CHROMIUM)")
    with sync_api.sync_playwright() as playwright:
        # root (CI) cannot use Chromium's user-namespace sandbox
        args = ["--disable-dev-shm-usage"] + (["--no-sandbox"] if os.geteuid() == 0 else [])
        launched = playwright.chromium.launch(executable_path=executable, args=args, timeout=60_000)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser, mission, request):
    """A page on the printed URL; a screenshot of it goes to ``test-artifacts/yamcs/<test>.png``."""
    _, control = mission
    context = browser.new_context(viewport={"width": 1400, "height": 900}, base_url=f"http://{control.http}")
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        (ARTIFACTS / "yamcs").mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "yamcs" / f"{request.node.name}.png"))
        context.close()


def commands_sent(control) -> int:
    _, body = control.api("archive/rackflight/commands?limit=500")
    return len(body.get("commands", []))


def test_browser_the_parameter_page_shows_battery_soc_updating(page):
    page.goto(f"/telemetry/parameters/rackflight/power/battery_soc/-/summary{INSTANCE_QUERY}")
    gentime = page.locator("dt", has_text="Generation time").locator("xpath=following-sibling::dd[1]")
    first = wait_until(lambda: (t := gentime.first.inner_text().strip()) and t != "-" and t,
                       "a value of battery_soc on the page", timeout_s=60)
    assert first.startswith("20"), first
    wait_until(lambda: gentime.first.inner_text().strip() != first, "the page to show the next value", timeout_s=60)
    assert page.get_by_text("State of charge.").count() == 1


def test_browser_a_command_from_the_form_completes_with_its_verification_stages(page, mission):
    _, control = mission
    page.goto(f"/commanding/send/rackflight/thermal/set_setpoint{INSTANCE_QUERY}")
    page.get_by_text("[15, 45]").wait_for()
    page.locator("form input").first.fill("30")
    page.get_by_role("button", name="Send").click()
    page.wait_for_url("**/-/report/**")
    for stage in ("Verifier_Acceptance", "Verifier_Start", "Verifier_Completion"):
        row = page.locator("tr", has_text=stage)
        row.wait_for()
        wait_until(lambda: "OK" in row.inner_text(), f"{stage} OK on the report", timeout_s=90)
    page.get_by_text("SUCCESS").first.wait_for()
    page.goto(f"/commanding/history{INSTANCE_QUERY}")
    latest = page.locator("tr", has_text="/rackflight/thermal/set_setpoint").first
    latest.wait_for()
    assert "SUCCESS" in latest.inner_text()


def test_browser_the_form_refuses_an_argument_out_of_range_and_sends_nothing(page, mission):
    _, control = mission
    before = commands_sent(control)
    page.goto(f"/commanding/send/rackflight/thermal/set_setpoint{INSTANCE_QUERY}")
    page.get_by_text("[15, 45]").wait_for()
    page.locator("form input").first.fill("500")
    send = page.get_by_role("button", name="Send")
    wait_until(lambda: not send.is_enabled(), "Send to be disabled for setpoint_c=500", timeout_s=10)
    page.locator("form input").first.press("Enter")
    assert "/-/report/" not in page.url, "the form went on to a report"
    assert commands_sent(control) == before


def test_browser_a_fault_past_a_red_limit_shows_on_the_alarms_page(page, mission):
    _, control = mission
    attrs = final(control, command(control, "hal/inject_fault", fault="sensor_noisy", value=100.0,
                                   target="coolant_supply_temp_c", duration_s=0.0))
    assert attrs["CommandComplete_Status"] == "OK", attrs
    page.goto(f"/alarms{INSTANCE_QUERY}")
    row = page.locator("tr", has_text="/rackflight/hal/coolant_supply_temp_c")
    row.first.wait_for(timeout=60_000)


def test_browser_an_onboard_event_shows_on_the_events_page_with_its_severity(page, mission):
    _, control = mission
    attrs = final(control, command(control, "thermal/set_setpoint", setpoint_c=31))
    assert attrs["CommandComplete_Status"] == "OK", attrs
    from playwright.sync_api import TimeoutError as PlaywrightTimeout  # installed: the page fixture checked

    row = page.locator("tr", has_text="-> 31.0").first  # thermal.setpoint_changed: "coolant setpoint 30.0 -> 31.0 °C"

    def listed():
        """The page's query (the last onboard hour) lists it: a fresh query each time."""
        page.goto(f"/events{INSTANCE_QUERY}")
        try:
            row.wait_for(timeout=10_000)
        except PlaywrightTimeout:
            return False
        return True

    wait_until(listed, "the event on the events page", timeout_s=90, interval_s=1)
    assert "thermal.setpoint_changed" in row.inner_text()
    severity = row.locator(".cdk-column-severity svg").get_attribute("class")
    assert "info" in severity.split(), severity


def test_ctrl_c_leaves_no_process(mission):
    """Runs last in the module: the fixture's teardown has not run yet, so stop it here."""
    _, control = mission
    children = control.children()
    assert set(children) == {"gateway", "Yamcs"}, control.output()
    assert control.stop() == 0, control.output()
    for name, pid in children.items():
        wait_until(lambda: not alive(pid), f"{name} (pid {pid}) to end", timeout_s=10)
    assert "stopping Yamcs and the gateway" in control.output()
