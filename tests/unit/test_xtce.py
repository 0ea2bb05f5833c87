"""``flight ground xtce``: the Yamcs mission database generated from the dictionary passes
yamcs-pymdb's own checks and holds every layout docs/icd.md gives, decoded here from the XTCE
itself (an XML parse of what Yamcs loads)."""

import struct
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

pytest.importorskip("yamcs.pymdb", reason="the yamcs extra is not installed (pip install -e '.[yamcs]')")

from flight.core.dictionary import full_dictionary  # noqa: E402
from flight.ground.xtce import MissionDatabase  # noqa: E402
from flight.spacelink.pus1_verification import FAILURE_CODE_NUMBERS  # noqa: E402

NS = {"x": "http://www.omg.org/spec/XTCE/20180204"}


@pytest.fixture(scope="module")
def db():
    return MissionDatabase(full_dictionary())


@pytest.fixture(scope="module")
def xml(db):
    return ET.fromstring(db.xtce())


def system(root, path):
    """The SpaceSystem element at ``path`` (``"power"``, ``"power/events"``) under the root."""
    node = root
    for name in path.split("/"):
        node = node.find(f"x:SpaceSystem[@name='{name}']", NS)
        assert node is not None, f"no space system {path}"
    return node


def param_type(space, name):
    types = space.find("x:TelemetryMetaData/x:ParameterTypeSet", NS)
    return next(t for t in types if t.get("name") == name)


def numbers(element):
    """An element's attributes as numbers."""
    return {k: float(v) for k, v in element.attrib.items()}


def test_the_database_passes_pymdbs_own_checks(db):
    assert db.problems() == []


def test_every_housekeeping_structure_is_a_container_of_typed_unit_bearing_parameters(xml):
    dictionary = full_dictionary()
    for comp in dictionary.components.values():
        if not comp.telemetry:
            continue
        space = system(xml, comp.name)
        container = space.find("x:TelemetryMetaData/x:ContainerSet/x:SequenceContainer[@name='housekeeping']", NS)
        refs = [e.get("parameterRef") for e in container.find("x:EntryList", NS)]
        expected = []
        for ch in comp.telemetry:
            expected += [f"{ch.name}_count", ch.name] if ch.size else [ch.name]
        assert refs == expected, comp.name
        criteria = container.find("x:BaseContainer/x:RestrictionCriteria//x:Condition", NS)
        assert criteria.find("x:ParameterInstanceRef", NS).get("parameterRef") == "../pus/structure_id"
        assert criteria.find("x:Value", NS).text == str(comp.component_id)
    power = system(xml, "power")
    soc = param_type(power, "battery_soc")
    assert soc.tag.endswith("FloatParameterType") and soc.get("sizeInBits") == "64"
    ranges = soc.find("x:DefaultAlarm/x:StaticAlarmRanges", NS)
    assert numbers(ranges.find("x:WarningRange", NS)) == {"minInclusive": 0.7, "maxInclusive": 1}
    assert numbers(ranges.find("x:CriticalRange", NS)) == {"minInclusive": 0.4, "maxInclusive": 1}
    limits = param_type(power, "gpu_power_limit_w")
    assert limits.tag.endswith("ArrayParameterType")
    length = limits.find("x:DimensionList/x:Dimension/x:EndingIndex/x:DynamicValue/x:ParameterInstanceRef", NS)
    assert length.get("parameterRef") == "gpu_power_limit_w_count"
    element = param_type(power, limits.get("arrayTypeRef"))
    assert element.find("x:UnitSet/x:Unit", NS).text == "W"
    thermal = system(xml, "thermal")
    assert param_type(thermal, "coolant_supply_temp_c").find("x:UnitSet/x:Unit", NS).text == "degC"


def test_events_share_the_pus5_header_and_have_their_typed_arguments(xml):
    pus = system(xml, "pus")
    ids = param_type(pus, "event_id")
    labels = {int(e.get("value")): e.get("label") for e in ids.find("x:EnumerationList", NS)}
    assert labels == full_dictionary().event_ids
    events = system(xml, "thermal/events")
    changed = events.find("x:TelemetryMetaData/x:ContainerSet/x:SequenceContainer[@name='setpoint_changed']", NS)
    assert [e.get("parameterRef") for e in changed.find("x:EntryList", NS)] == \
        ["setpoint_changed__old_c", "setpoint_changed__new_c"]
    assert param_type(events, "setpoint_changed__new_c").find("x:UnitSet/x:Unit", NS).text == "degC"


def test_every_command_is_a_tc81_with_its_opcode_and_range_checked_arguments(xml):
    dictionary = full_dictionary()
    for qualified, cmd in dictionary.commands.items():
        comp, name = qualified.split(".")
        meta = system(xml, comp).find(f"x:CommandMetaData/x:MetaCommandSet/x:MetaCommand[@name='{name}']", NS)
        entries = meta.find("x:CommandContainer/x:EntryList", NS)
        assert entries[0].get("binaryValue") == f"{dictionary.opcode(qualified):04x}"
        assert [e.get("argumentRef") for e in entries[1:]] == [a.name for a in cmd.args]
        stages = [v.get("name") for v in meta.find("x:VerifierSet", NS)]
        assert stages == ["Acceptance", "Start", "Completion"], qualified
    thermal = system(xml, "thermal")
    setpoint = next(t for t in thermal.find("x:CommandMetaData/x:ArgumentTypeSet", NS)
                    if t.get("name") == "set_setpoint__setpoint_c")
    assert numbers(setpoint.find("x:ValidRangeSet/x:ValidRange", NS)) == {"minInclusive": 15, "maxInclusive": 45}
    assert setpoint.find("x:UnitSet/x:Unit", NS).text == "degC"
    ping = system(xml, "pus").find("x:CommandMetaData/x:MetaCommandSet/x:MetaCommand[@name='are_you_alive']", NS)
    assert {a.get("argumentName"): a.get("argumentValue")
            for a in ping.iter("{%s}ArgumentAssignment" % NS["x"])} == {"pus_service": "17", "pus_subtype": "1"}


def test_verifiers_match_reports_by_request_id_and_show_the_failure_code(xml):
    meta = system(xml, "thermal").find("x:CommandMetaData/x:MetaCommandSet/x:MetaCommand[@name='set_setpoint']", NS)
    names = set()
    for verifier, stage in zip(meta.find("x:VerifierSet", NS), (1, 3, 7)):
        algorithm = verifier.find("x:CustomAlgorithm", NS)
        names.add(algorithm.get("name"))
        assert f"Pus1Verifier({{stage: {stage}," in algorithm.find("x:AlgorithmText", NS).text
        inputs = [(i.get("inputName"), i.get("parameterRef")) for i in algorithm.find("x:InputSet", NS)]
        assert [name for name, _ in inputs] == ["sentApid", "sentSeqCount", "rcvdApid", "rcvdSeqCount",
                                                 "reportSubType", "code"]
        assert inputs[1][1] == "/yamcs/cmdHist/ccsds-seqcount"
    assert len(names) == 3, "one algorithm name per verifier: Yamcs runs one per name"
    codes = param_type(system(xml, "pus"), "failure_code")
    assert {e.get("label"): int(e.get("value")) for e in codes.find("x:EnumerationList", NS)} == FAILURE_CODE_NUMBERS


def test_the_request_id_layout_is_the_tc_primary_header(xml):
    """TM[1,x]'s request id (docs/icd.md section 10): version 3, type 1, secondary header 1,
    APID 11, sequence flags 2, sequence count 14 bits, decoded as the XTCE lays it out."""
    container = system(xml, "pus").find(
        "x:TelemetryMetaData/x:ContainerSet/x:SequenceContainer[@name='verification_report']", NS)
    widths = []
    for entry in container.find("x:EntryList", NS):
        ptype = param_type(system(xml, "pus"), entry.get("parameterRef"))
        widths.append((entry.get("parameterRef"), int(ptype.find("x:IntegerDataEncoding", NS).get("sizeInBits"))))
    word = struct.unpack(">I", bytes.fromhex("1804c001"))[0]  # the ICD's TC[17,1] example, sequence count 1
    fields, shift = {}, 32
    for name, bits in widths:
        shift -= bits
        fields[name] = word >> shift & ((1 << bits) - 1)
    assert fields["request_apid"] == 4 and fields["request_seq_count"] == 1 and fields["request_seq_flags"] == 3


def test_flight_ground_xtce_writes_the_file(tmp_path):
    out = tmp_path / "rackflight.xml"
    proc = subprocess.run([sys.executable, "-m", "flight.cli", "ground", "xtce", "--out", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ET.parse(out).getroot().get("name") == "rackflight"
