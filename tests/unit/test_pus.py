"""The space-link packet codec (flight.spacelink: framing, codec, the PUS service modules):
every TM it builds reads back with spacepackets' own readers; TC[8,1] round-trips for every command in the dictionary;
malformed input raises only the documented errors; the uplink stream parser survives
random and mutated bytes, accounts for every byte and still finds the next valid packet."""

import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spacepackets.ccsds.time import CdsShortTimestamp
from spacepackets.ecss.pus_1_verification import ManagedParamsVerification, Service1Tm
from spacepackets.ecss.pus_17_test import Service17Tm
from spacepackets.ecss.req_id import RequestId
from spacepackets.ecss.tc import PusTc
from spacepackets.ecss.tm import InvalidTmCrc16Error, ManagedParams, PusTm

from flight.core.component import (FAILURE_CODES, SEVERITIES, Arg, Channel, Command, CommandError, Component,
                                   Dictionary, Event, EventArg)
from flight.core.dictionary import full_dictionary
from flight.spacelink import (
    codec,
    framing,
    pus17_test as pus17,
    pus1_verification as pus1,
    pus3_housekeeping as pus3,
    pus5_events as pus5,
    pus8_functions as pus8,
    services,
)

UTC = 1_767_225_600.25  # 2026-01-01T00:00:00.25Z

PROBE = Component(
    "probe", 100, doc="Exercises every argument and channel type the link encodes.",
    commands=(
        Command("all_types", 1, (Arg("x", "float", "m", -10, 10), Arg("n", "int"), Arg("on", "bool"),
                                 Arg("label", "str"), Arg("mode", "str", choices=("A", "B")))),
        Command("nothing", 2),
    ),
    telemetry=(Channel("f", "float", "W", yellow=(0, 1), red=(-1, 2)), Channel("i", "int", "count"),
               Channel("b", "bool"), Channel("s", "str"), Channel("arr", "float", "degC", size=4)),
    events=tuple(Event(f"ev_{s.lower()}", k, s, "{what}", args=(EventArg("what", "str"),)) for k, s in enumerate(SEVERITIES, start=1)),
)
ARRAYS = Component("arrays", 101, doc="An array channel of every type that has an array encoding.",
                   telemetry=(Channel("fa", "float", "W", size=3), Channel("ia", "int", "count", size=3),
                              Channel("ba", "bool", size=3)))
DICT = Dictionary([*full_dictionary().components.values(), PROBE, ARRAYS])
COMMANDS = sorted(DICT.commands)


def _arg_values(arg: Arg) -> st.SearchStrategy:
    if arg.type == "float":
        return st.floats(allow_nan=False)
    if arg.type == "int":
        return st.integers(-(2**63), 2**63 - 1)
    if arg.type == "bool":
        return st.booleans()
    return st.sampled_from(arg.choices) if arg.choices else st.text(max_size=63)


def _channel_values(ch: Channel) -> st.SearchStrategy:
    if ch.size:
        element = {"float": st.floats(allow_nan=False), "int": st.integers(-(2**31), 2**31 - 1),
                   "bool": st.booleans()}[ch.type]
        return st.lists(element, min_size=ch.size, max_size=ch.size)
    return {"float": st.floats(allow_nan=False), "int": st.integers(-(2**63), 2**63 - 1),
            "bool": st.booleans(), "str": st.text(max_size=63)}[ch.type]


def _tm(packet: bytes) -> PusTm:
    """Read with spacepackets' generic reader: CRC, header fields and a CDS short time field."""
    tm = PusTm.unpack(packet, timestamp_len=CdsShortTimestamp.TIMESTAMP_SIZE)
    assert tm.sp_header.packet_len == len(packet)
    assert abs(CdsShortTimestamp.unpack(tm.timestamp).as_unix_seconds() - UTC) < 1e-3
    return tm


def _valid_tc(seq=7) -> bytes:
    return bytes(pus17.ping_tc(seq_count=seq, source_id=0x2A).pack())


# -- tables and time -------------------------------------------------------------------------
def test_failure_code_table_numbers_every_dictionary_and_link_code_once():
    assert set(pus1.FAILURE_CODE_NUMBERS) == set(FAILURE_CODES) | set(pus1.LINK_FAILURE_CODES)
    assert not set(FAILURE_CODES) & set(pus1.LINK_FAILURE_CODES)
    assert sorted(pus1.FAILURE_CODE_NUMBERS[c] for c in FAILURE_CODES) == list(range(1, len(FAILURE_CODES) + 1))
    assert sorted(pus1.FAILURE_CODE_NUMBERS[c] for c in pus1.LINK_FAILURE_CODES) == \
        list(range(128, 128 + len(pus1.LINK_FAILURE_CODES)))
    assert all(pus1.FAILURE_CODE_NAMES[n] == c for c, n in pus1.FAILURE_CODE_NUMBERS.items())


@given(st.floats(0, 5e9))
def test_cds_time_code_round_trips_to_the_millisecond(utc):
    stamp = framing.cds_timestamp(utc)
    assert len(stamp) == 7 and stamp[0] == 0x40  # CDS, 16-bit day, ms of day, no submillis
    assert abs(framing.unix_from_cds(stamp) - utc) <= 1e-3
    assert CdsShortTimestamp.unpack(stamp).as_unix_seconds() == framing.unix_from_cds(stamp)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_cds_time_code_refuses_times_it_cannot_hold(bad):
    with pytest.raises(ValueError):
        framing.cds_timestamp(bad)


def test_each_packet_carries_its_own_time_through_the_encoders_time_code_reuse():
    enc = services.TmEncoder()
    tc = PusTc.unpack(_valid_tc())
    times = [UTC, UTC, UTC + 1.5, UTC, UTC + 1.5]
    stamps = [PusTm.unpack(enc.ping_reply(tc, utc_unix_s=t), 7).timestamp for t in times]
    assert [framing.unix_from_cds(s) for s in stamps] == pytest.approx(times, abs=1e-3)
    with pytest.raises(ValueError):
        enc.ping_reply(tc, utc_unix_s=math.nan)
    assert framing.unix_from_cds(PusTm.unpack(enc.ping_reply(tc, utc_unix_s=UTC), 7).timestamp) == \
        pytest.approx(UTC, abs=1e-3)


@pytest.mark.parametrize("endpoint, host, port, loopback", [
    ("127.0.0.1:52001", "127.0.0.1", 52001, True), ("localhost:0", "localhost", 0, True),
    ("[::1]:9", "::1", 9, True), ("127.9.9.9:1", "127.9.9.9", 1, True),
    ("0.0.0.0:52001", "0.0.0.0", 52001, False), ("10.1.2.3:5", "10.1.2.3", 5, False),
    ("example.org:80", "example.org", 80, False),
])
def test_endpoints_parse_and_only_loopback_counts_as_loopback(endpoint, host, port, loopback):
    assert framing.parse_endpoint(endpoint) == (host, port)
    assert framing.is_loopback(host) is loopback


@pytest.mark.parametrize("endpoint", ["52001", ":52001", "host:", "host:port", "host:70000"])
def test_malformed_endpoints_are_refused(endpoint):
    with pytest.raises(ValueError):
        framing.parse_endpoint(endpoint)


# -- TC[8,1] ------------------------------------------------------------------------------------
@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_function_tc_round_trips_for_every_command(data):
    qualified = data.draw(st.sampled_from(COMMANDS))
    cmd = DICT.commands[qualified]
    args = {a.name: data.draw(_arg_values(a), label=a.name) for a in cmd.args}
    tc = pus8.function_tc(DICT, qualified, args, seq_count=3, source_id=9)
    parsed = PusTc.unpack(tc.pack())
    assert (parsed.apid, parsed.service, parsed.message_subtype) == (framing.TC_APID, 8, 1)
    assert struct.unpack(">H", parsed.app_data[:2])[0] == DICT.opcode(qualified)
    assert pus8.decode_function(DICT, parsed.app_data) == (qualified, args)


def test_every_real_command_is_covered_by_the_round_trip():
    assert {q for q in COMMANDS if not q.startswith("probe.")} == set(full_dictionary().commands)
    assert len(COMMANDS) > 5


@pytest.mark.parametrize("qualified, args, code", [
    ("nosuch.command", {}, "INVALID_OPCODE"),
    ("probe.nothing", {"extra": 1}, "FORMAT_ERROR"),
    ("probe.all_types", {"x": 1.0, "n": 1, "on": True, "label": "x"}, "FORMAT_ERROR"),  # mode missing
    ("probe.all_types", {"x": "1", "n": 1, "on": True, "label": "x", "mode": "A"}, "FORMAT_ERROR"),
    ("probe.all_types", {"x": 1.0, "n": 2**63, "on": True, "label": "x", "mode": "A"}, "FORMAT_ERROR"),
    ("probe.all_types", {"x": 1.0, "n": 1.5, "on": True, "label": "x", "mode": "A"}, "FORMAT_ERROR"),
    ("probe.all_types", {"x": 1.0, "n": 1, "on": "yes", "label": "x", "mode": "A"}, "FORMAT_ERROR"),
    ("probe.all_types", {"x": 1.0, "n": 1, "on": True, "label": "é" * 128, "mode": "A"}, "FORMAT_ERROR"),
])
def test_encoding_a_bad_command_raises_its_failure_code(qualified, args, code):
    with pytest.raises(CommandError) as err:
        pus8.encode_function(DICT, qualified, args)
    assert err.value.code == code


def test_encoding_checks_types_not_ranges():
    """Range checks are the validator's: the ground may send an out-of-range value on purpose."""
    data = pus8.encode_function(DICT, "thermal.set_setpoint", {"setpoint_c": 99.0})
    assert pus8.decode_function(DICT, data) == ("thermal.set_setpoint", {"setpoint_c": 99.0})


@pytest.mark.parametrize("data, code", [
    (b"", "FORMAT_ERROR"), (b"\x03", "FORMAT_ERROR"), (b"\x7f\x7f", "INVALID_OPCODE"),
    (b"\x03\x01\x40", "FORMAT_ERROR"),                       # f64 cut short
    (b"\x01\x01\x00", "FORMAT_ERROR"),                       # exec.noop with a trailing byte
    (b"\x64\x01" + bytes(8) + bytes(8) + b"\x02", "FORMAT_ERROR"),  # bool byte 2
    (b"\x64\x01" + bytes(8) + bytes(8) + b"\x01\x02\xff\xfe\x01A", "FORMAT_ERROR"),  # not UTF-8
])
def test_decoding_bad_function_data_raises_its_failure_code(data, code):
    with pytest.raises(CommandError) as err:
        pus8.decode_function(DICT, data)
    assert err.value.code == code


def _decodes_or_command_error(data: bytes) -> None:
    try:
        qualified, args = pus8.decode_function(DICT, data)
    except CommandError as exc:
        assert exc.code in ("FORMAT_ERROR", "INVALID_OPCODE")
    else:
        assert set(args) == {a.name for a in DICT.commands[qualified].args}


@settings(max_examples=500)
@given(st.binary(max_size=64))
def test_decoding_garbage_function_data_raises_only_command_error(data):
    _decodes_or_command_error(data)


@settings(max_examples=500)
@given(st.data())
def test_decoding_mutated_function_data_raises_only_command_error(data):
    qualified = data.draw(st.sampled_from(COMMANDS))
    args = {a.name: data.draw(_arg_values(a)) for a in DICT.commands[qualified].args}
    raw = bytearray(pus8.encode_function(DICT, qualified, args))
    how = data.draw(st.sampled_from(["flip", "cut", "extend"]))
    if how == "flip":
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= data.draw(st.integers(1, 255))
    elif how == "cut":
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    else:
        raw += data.draw(st.binary(min_size=1, max_size=8))
    _decodes_or_command_error(bytes(raw))


# -- TM built by TmEncoder, read by spacepackets ----------------------------------------------------
def test_ping_reply_reads_as_service_17_tm():
    tc = PusTc.unpack(_valid_tc())
    packet = services.TmEncoder().ping_reply(tc, utc_unix_s=UTC)
    tm = _tm(packet)
    s17 = Service17Tm.unpack(packet, timestamp_len=7)
    assert (s17.service, s17.message_subtype, s17.sp_header.apid) == (17, 2, framing.TC_APID)
    assert tm.pus_tm_sec_header.dest_id == 0x2A and s17.source_data == b""


@pytest.mark.parametrize("subtype, code", [(1, None), (2, "VALIDATION_ERROR"), (3, None), (4, "BUSY"),
                                           (5, None), (7, None), (8, "EXECUTION_ERROR")])
def test_verification_reports_read_as_service_1_tm(subtype, code):
    tc = PusTc.unpack(_valid_tc(seq=1234))
    packet = services.TmEncoder().verification(subtype, tc, utc_unix_s=UTC, code=code, message="too hot: 99 °C",
                                               step=3 if subtype == 5 else None)
    _tm(packet)
    s1 = Service1Tm.unpack(packet, ManagedParams(timestamp_len=7), ManagedParamsVerification())
    assert (s1.service, s1.message_subtype, s1.sp_header.apid) == (1, subtype, framing.TC_APID)
    assert s1.tc_req_id == RequestId.from_sp_header(tc.sp_header)
    if code is None:
        assert s1.error_code is None
    else:
        assert s1.error_code.val == pus1.FAILURE_CODE_NUMBERS[code]
        assert s1.failure_notice.data.decode() == "too hot: 99 °C"
    if subtype == 5:
        assert s1.step_id.val == 3
    report = services.decode_tm(DICT, packet)
    assert (report.subtype, report.code, report.request_id) == (subtype, code, framing.request_id(tc))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_hk_reports_round_trip_for_every_component(data):
    component = data.draw(st.sampled_from(list(DICT.components.values())))
    values = {ch.name: data.draw(_channel_values(ch), label=ch.name) for ch in component.telemetry}
    packet = services.TmEncoder().hk_report(component, values, utc_unix_s=UTC)
    tm = _tm(packet)
    assert (tm.service, tm.message_subtype, tm.apid) == (3, 25, component.component_id)
    assert struct.unpack(">H", tm.source_data[:2])[0] == component.component_id
    report = services.decode_tm(DICT, packet)
    assert report.component is component and report.values == values


def test_hk_report_accepts_numpy_and_lenient_numbers():
    values = {"f": np.float32(0.5), "i": np.int64(3), "b": np.bool_(True), "s": "ok", "arr": np.arange(4.0)}
    component, decoded = pus3.decode_hk(DICT, pus3.encode_hk(PROBE, values))
    assert decoded == {"f": 0.5, "i": 3, "b": True, "s": "ok", "arr": [0.0, 1.0, 2.0, 3.0]}
    assert pus3.decode_hk(DICT, pus3.encode_hk(PROBE, {**values, "i": 4.0, "b": 0}))[1]["i"] == 4


def test_hk_arrays_are_packed_by_channel_type_and_read_back_as_that_type():
    values = {"fa": [0.5, -1.0, 2.25], "ia": [0, -(2**31), 2**31 - 1], "ba": [True, False, True]}
    packet = services.TmEncoder().hk_report(ARRAYS, values, utc_unix_s=UTC)
    assert _tm(packet).source_data == (struct.pack(">H", ARRAYS.component_id) + struct.pack(">H3d", 3, 0.5, -1.0, 2.25)
                                       + struct.pack(">H3i", 3, 0, -(2**31), 2**31 - 1) + bytes([0, 3, 1, 0, 1]))
    decoded = services.decode_tm(DICT, packet).values
    assert decoded == values
    assert [type(v) for v in decoded["ia"]] == [int] * 3 and [type(v) for v in decoded["ba"]] == [bool] * 3
    as_numpy = {"fa": np.arange(3, dtype=np.float32), "ia": np.array([1, 2, 3], dtype=np.int64),
                "ba": np.array([True, False, False])}
    assert pus3.decode_hk(DICT, pus3.encode_hk(ARRAYS, as_numpy))[1] == {"fa": [0.0, 1.0, 2.0], "ia": [1, 2, 3],
                                                                         "ba": [True, False, False]}
    lenient = {"fa": [1, 2, 3], "ia": [1.0, 2.0, True], "ba": [1, 0, 1.0]}
    assert pus3.decode_hk(DICT, pus3.encode_hk(ARRAYS, lenient))[1] == {"fa": [1.0, 2.0, 3.0], "ia": [1, 2, 1],
                                                                        "ba": [True, False, True]}


@pytest.mark.parametrize("arrays", [
    {"ia": [2**31, 0, 0]},                                   # over i32: raises, never wraps
    {"ia": [-(2**31) - 1, 0, 0]},
    {"ia": [2**70, 0, 0]},
    {"ia": [1.5, 0, 0]},
    {"ia": [math.nan, 0, 0]},
    {"ia": [math.inf, 0, 0]},
    {"ia": ["1", "2", "3"]},
    {"ba": [2, 0, 1]},
    {"ba": [0.5, 0, 1]},
    {"fa": ["1.5", "2", "3"]},
    {"fa": [None, 1.0, 2.0]},
])
def test_hk_array_values_that_do_not_fit_their_type_raise_value_error(arrays):
    with pytest.raises(ValueError):
        pus3.encode_hk(ARRAYS, {"fa": [0.0] * 3, "ia": [0] * 3, "ba": [False] * 3, **arrays})


def test_hk_array_of_an_int_channel_overflowing_as_numpy_raises_value_error():
    with pytest.raises(ValueError, match="i32"):
        pus3.encode_hk(ARRAYS, {"fa": [0.0] * 3, "ia": np.array([0, 2**40, 0], dtype=np.int64), "ba": [False] * 3})


def test_hk_bool_array_byte_other_than_0_or_1_does_not_decode():
    data = bytearray(pus3.encode_hk(ARRAYS, {"fa": [0.0] * 3, "ia": [0] * 3, "ba": [False] * 3}))
    data[-1] = 2
    with pytest.raises(ValueError, match="not 0 or 1"):
        pus3.decode_hk(DICT, bytes(data))


@pytest.mark.parametrize("values", [
    {"f": 1.0, "i": 1, "b": True, "s": "x"},                              # arr missing
    {"f": "1", "i": 1, "b": True, "s": "x", "arr": []},
    {"f": 1.0, "i": 1.5, "b": True, "s": "x", "arr": []},
    {"f": 1.0, "i": 1, "b": 7, "s": "x", "arr": []},
    {"f": 1.0, "i": 1, "b": True, "s": b"x", "arr": []},
    {"f": 1.0, "i": 1, "b": True, "s": "x", "arr": ["a"]},
    {"f": 1.0, "i": 1, "b": True, "s": "x", "arr": [0.0] * 3000},        # over MAX_TM_SOURCE_DATA
])
def test_hk_values_that_cannot_be_encoded_raise_value_error(values):
    with pytest.raises(ValueError):
        pus3.encode_hk(PROBE, values)


@pytest.mark.parametrize("severity", SEVERITIES)
def test_event_reports_use_the_subtype_of_their_severity(severity):
    qualified = f"probe.ev_{severity.lower()}"
    packet = services.TmEncoder().event_report(DICT, qualified, "wörds " * 400, utc_unix_s=UTC)
    tm = _tm(packet)
    assert (tm.service, tm.message_subtype, tm.apid) == (5, pus5.EVENT_SUBTYPES[severity], PROBE.component_id)
    event_id, message, _ = pus5.decode_event(DICT, tm.source_data)
    assert event_id == DICT.event_id(qualified)
    assert len(message.encode()) <= codec.MAX_TEXT_BYTES and ("wörds " * 400).startswith(message)
    report = services.decode_tm(DICT, packet)
    assert (report.name, report.severity) == (qualified, severity)


def test_sequence_counts_run_per_apid_and_wrap_at_14_bits():
    enc = services.TmEncoder()
    tc = PusTc.unpack(_valid_tc())
    counts = [PusTm.unpack(enc.ping_reply(tc, utc_unix_s=UTC), 7).seq_count for _ in range(3)]
    assert counts == [0, 1, 2]
    assert PusTm.unpack(enc.hk_report(PROBE, {"f": 0, "i": 0, "b": 0, "s": "", "arr": []}, utc_unix_s=UTC),
                        7).seq_count == 0
    enc._seq[framing.TC_APID] = framing.SEQ_COUNT_MODULO - 1
    assert [PusTm.unpack(enc.ping_reply(tc, utc_unix_s=UTC), 7).seq_count for _ in range(2)] == [16383, 0]


@settings(max_examples=300)
@given(st.data())
def test_decoding_corrupted_tm_raises_only_tm_decode_error(data):
    tc = PusTc.unpack(_valid_tc())
    enc = services.TmEncoder()
    packet = bytearray(data.draw(st.sampled_from([
        enc.ping_reply(tc, utc_unix_s=UTC), enc.verification(8, tc, utc_unix_s=UTC, code="BUSY"),
        enc.event_report(DICT, "probe.ev_high", "x", utc_unix_s=UTC),
        enc.hk_report(PROBE, {"f": 0, "i": 0, "b": 0, "s": "", "arr": [1.0]}, utc_unix_s=UTC)])))
    i = data.draw(st.integers(0, len(packet) - 1))
    packet[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(framing.TmDecodeError):
        services.decode_tm(DICT, bytes(packet))  # the CRC catches every single-byte error
    with pytest.raises((InvalidTmCrc16Error, ValueError)):
        PusTm.unpack(bytes(packet), 7)


def test_decode_tm_refuses_well_formed_tm_it_does_not_know():
    enc = services.TmEncoder()
    with pytest.raises(framing.TmDecodeError, match="TM\\[9,9\\]"):
        services.decode_tm(DICT, enc.packet(1, 9, 9, b"", utc_unix_s=UTC))
    with pytest.raises(framing.TmDecodeError, match="structure id"):
        services.decode_tm(DICT, enc.packet(1, 3, 25, b"\x7f\x7f", utc_unix_s=UTC))


def test_tm_stream_is_split_into_packets_across_arbitrary_chunks():
    enc = services.TmEncoder()
    tc = PusTc.unpack(_valid_tc())
    packets = [enc.ping_reply(tc, utc_unix_s=UTC), enc.event_report(DICT, "probe.ev_low", "hi", utc_unix_s=UTC)]
    stream = b"\x00junk" + b"".join(packets)
    ids = framing.tm_packet_ids(DICT)
    got, buf = [], bytearray()
    for i in range(0, len(stream), 5):
        buf += stream[i:i + 5]
        found, consumed, _ = framing.split_tm_stream(buf, ids)
        del buf[:consumed]
        got += found
    assert got == packets


# -- the uplink stream parser ---------------------------------------------------------------------
def _account(items: list) -> tuple[list[bytes], int]:
    tcs = [bytes(i.pack()) for i in items if isinstance(i, PusTc)]
    return tcs, sum(i.nbytes for i in items if isinstance(i, framing.Rejection))


def _feed_all(parser: framing.TcStreamParser, data: bytes, chunk: int) -> list:
    out = []
    for i in range(0, len(data), chunk):
        out += parser.feed(data[i:i + chunk])
    return out


def test_parser_frames_packets_split_anywhere():
    packets = [_valid_tc(seq) for seq in range(3)]
    packets.append(bytes(pus8.function_tc(DICT, "thermal.set_gains", {"loop": "pump", "kp": 1.0, "ki": 0.0,
                                                                      "kd": 0.0}, seq_count=4, source_id=1).pack()))
    stream = b"".join(packets)
    for chunk in (1, 2, 7, len(stream)):
        parser = framing.TcStreamParser()
        tcs, discarded = _account(_feed_all(parser, stream, chunk))
        assert tcs == packets and discarded == 0 and parser.buffered == 0


def _mutations(valid: bytes) -> st.SearchStrategy:
    flipped = st.tuples(st.integers(0, len(valid) - 1), st.integers(1, 255)).map(
        lambda t: valid[:t[0]] + bytes([valid[t[0]] ^ t[1]]) + valid[t[0] + 1:])
    cut = st.integers(1, len(valid) - 1).map(lambda n: valid[:n])
    return st.one_of(flipped, cut)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(garbage=st.lists(st.one_of(st.binary(max_size=40), _mutations(_valid_tc(9))), max_size=5).map(b"".join),
       chunk=st.integers(1, 64))
def test_parser_survives_garbage_accounts_for_every_byte_and_finds_the_next_tc(garbage, chunk):
    parser = framing.TcStreamParser()
    valid = _valid_tc()
    items = _feed_all(parser, garbage, chunk) + _feed_all(parser, valid, chunk)
    items += parser.flush_stalled() if parser.buffered else []
    tcs, discarded = _account(items)
    assert tcs[-1] == valid and parser.buffered == 0
    # garbage can hold a whole valid TC (hypothesis finds one by splicing); every other byte is rejected
    assert discarded == len(garbage) - sum(map(len, tcs[:-1]))
    assert any(isinstance(i, framing.Rejection) for i in items) == (discarded > 0)


@settings(max_examples=500)
@given(st.binary(min_size=1, max_size=300))
def test_parser_never_raises_on_random_bytes(data):
    parser = framing.TcStreamParser()
    items = parser.feed(data)
    tcs, discarded = _account(items)
    assert sum(map(len, tcs)) + discarded + parser.buffered == len(data)


def test_a_packet_with_a_bad_crc_is_one_rejection_and_the_next_packet_is_found():
    bad = bytearray(_valid_tc())
    bad[-1] ^= 0xFF
    items = framing.TcStreamParser().feed(bytes(bad) + _valid_tc())
    assert [type(i) for i in items] == [framing.Rejection, PusTc]
    assert items[0] == framing.Rejection("bad CRC", len(bad))


def test_a_partial_header_that_never_completes_is_flushed_when_the_sender_goes_quiet():
    long_tc = bytes(pus8.function_tc(DICT, "thermal.set_gains", {"loop": "pump", "kp": 1.0, "ki": 0.0, "kd": 0.0},
                                     seq_count=4, source_id=1).pack())
    parser = framing.TcStreamParser()
    assert parser.feed(long_tc[:10] + _valid_tc()) == []  # the cut header's length swallows the ping
    items = parser.flush_stalled()
    assert [type(i) for i in items] == [framing.Rejection, PusTc] and items[0].nbytes == 10


def test_overflowing_the_buffer_discards_everything_as_one_rejection():
    parser = framing.TcStreamParser(max_buffer=32)
    assert parser.feed(_valid_tc()[:8]) == []
    assert parser.feed(bytes(30)) == [framing.Rejection(framing.OVERFLOW, 38)]
    assert parser.buffered == 0
    assert _account(parser.feed(_valid_tc()))[0] == [_valid_tc()]
