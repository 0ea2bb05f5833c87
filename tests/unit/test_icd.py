"""The interface control document: ``docs/icd.md`` is what ``flight dict --icd`` generates
from the declarations now, its layouts are the ones the codecs put on the wire, and it
declares exactly the TCs the link serves."""

import json
import struct
import subprocess
import sys
from pathlib import Path

from spacepackets.ccsds.time import CdsShortTimestamp
from spacepackets.ecss.tc import PusTc
from spacepackets.ecss.tm import PusTm

from flight import icd
from flight.spacelink import framing, pus3_housekeeping as pus3, pus15_storage as pus15, sdls
from flight.spacelink.layout import Field, Repeat
from tests.support.link_harness import DICT

ROOT = Path(__file__).resolve().parents[2]
ICD = ROOT / "docs" / "icd.md"


def test_the_committed_icd_is_what_the_code_declares():
    assert ICD.read_text() == icd.render(DICT), "docs/icd.md is stale: run `flight dict --icd --out docs/icd.md`"


def test_flight_dict_icd_prints_it_and_writes_it(tmp_path):
    out = subprocess.run([sys.executable, "-m", "flight.cli", "dict", "--icd"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout == ICD.read_text()
    target = tmp_path / "icd.md"
    out = subprocess.run([sys.executable, "-m", "flight.cli", "dict", "--icd", "--out", str(target)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and target.read_text() == ICD.read_text() and "icd.md" in out.stdout
    out = subprocess.run([sys.executable, "-m", "flight.cli", "dict", "--out", str(target)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "--icd" in out.stderr


def test_it_declares_every_tc_the_link_serves_and_no_other(harness):
    declared = {(m.service, m.subtype) for m in icd.messages() if m.kind == "TC"}
    assert declared == set(harness.link.router.routes)


def test_every_message_is_declared_once_and_every_field_has_a_known_count():
    labels = [m.label for m in icd.messages()]
    assert len(labels) == len(set(labels))
    for m in icd.messages():
        names = []
        for f in m.fields:
            if isinstance(f, Repeat):
                assert f.count in names, f"{m.label}: {f.count} is repeated before it is read"
            else:
                names.append(f.name)


def test_fixed_layouts_are_the_bytes_the_codecs_write():
    entry = pus15.StoreStatusEntry(3, True, 10, 2, framing.unix_from_cds(framing.cds_timestamp(1e9)),
                                   framing.unix_from_cds(framing.cds_timestamp(1.1e9)), 1, 2, 3, 4)
    packet = pus15.store_status_report(framing.TmFramer(), [entry], dest_id=7, utc_unix_s=1e9)
    data = PusTm.unpack(packet, timestamp_len=framing.TIMESTAMP_LEN).source_data
    sizes = [f.size for f in pus15.STATUS_ENTRY]
    assert len(data) == 1 + sum(sizes) and data[0] == 1
    assert struct.unpack(">BBII", data[1:11]) == (3, 1, 10, 2)  # offsets as the ICD prints them
    thermal = DICT.components["thermal"]
    structure = pus3.hk_structure_data(thermal, True, 10.0)
    assert struct.unpack(">HBIH", structure[:9]) == (thermal.component_id, 1, 10_000, len(thermal.telemetry))
    signed = sdls.protect(framing.build_tc(17, 1, seq_count=1, source_id=1), icd.EXAMPLE_KEY, 5)
    header = bytes(signed.app_data)[:sum(f.size for f in sdls.SECURITY_HEADER)]
    assert struct.unpack(">HQ", header) == (icd.EXAMPLE_KEY.spi, 5)


def test_the_time_code_is_p_field_0x40_and_days_and_ms_since_1958():
    stamp = framing.cds_timestamp(icd.EXAMPLE_UTC.timestamp())
    days = (icd.EXAMPLE_UTC - framing.CDS_EPOCH).days
    assert stamp == bytes([framing.CDS_P_FIELD]) + struct.pack(">HI", days, 12 * 3600 * 1000)
    assert CdsShortTimestamp.unpack(stamp).as_unix_seconds() == icd.EXAMPLE_UTC.timestamp()
    assert Field("t", "cds").size == framing.TIMESTAMP_LEN


def test_the_worked_examples_are_packets_a_standard_reader_reads():
    text = ICD.read_text()
    ping = framing.build_tc(17, 1, seq_count=1, source_id=icd.EXAMPLE_SOURCE_ID)
    assert bytes(ping.pack()).hex(" ") in text
    signed = [line.strip() for line in text.splitlines() if line.startswith("    18 04 c0 01 00 20")]
    tc = PusTc.unpack(bytes.fromhex(signed[0].replace(" ", "")))  # CRC checked
    assert sdls.unprotect(tc, {icd.EXAMPLE_KEY.spi: icd.EXAMPLE_KEY}).arsn == 1


def test_dict_json_says_how_its_ids_appear_on_the_space_link():
    out = subprocess.run([sys.executable, "-m", "flight.cli", "dict", "--json"], capture_output=True, text=True,
                         timeout=60)
    link = json.loads(out.stdout)["space_link"]
    assert link["tc_apid"] == framing.TC_APID and "TC[8,1] function id" in link["function_id"]
    assert "APID" in link["apid"] and link["failure_codes"]["ILLEGAL_SUBTYPE"] == 132
