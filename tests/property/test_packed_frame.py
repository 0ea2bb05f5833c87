"""The packed sensor frame of the lockstep channel (:func:`flight.hal.protocol.pack_frame`):
every frame the field table admits comes back exactly as it went, with the types the
subsystems see in process; anything else is refused with a clear error."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from flight.core.messages import DecodeError
from flight.core.tle import DEFAULT_TLE_PATH, load_tle
from flight.hal.protocol import PACKED_FRAME_BYTES, SENSOR_FIELDS, check_frame, pack_frame, unpack_frame
from sim_hw.satellite import Satellite


def assert_same_frame(got: dict, sent: dict) -> None:
    assert set(got) == set(sent)
    for name, value in sent.items():
        if isinstance(value, np.ndarray):
            assert got[name].dtype == value.dtype and got[name].shape == value.shape, name
            # bit for bit: -0.0 stays -0.0, and NaN (which no checked frame holds) stays NaN
            assert got[name].tobytes() == value.tobytes(), name
            assert not got[name].flags.writeable, name
        else:
            assert type(got[name]) is type(value) and np.float64(got[name]).tobytes() == np.float64(value).tobytes(), name


def field_value(field) -> st.SearchStrategy:
    if field.dtype == "bool":
        return st.booleans() if field.shape == () else arrays(np.bool_, field.shape)
    values = st.floats(width=64)
    return values if field.shape == () else arrays(np.float64, field.shape, elements=values)


frames = st.fixed_dictionaries({f.name: field_value(f) for f in SENSOR_FIELDS})


@settings(max_examples=200, deadline=None)
@given(frames)
def test_any_frame_of_the_declared_fields_comes_back_bit_for_bit(frame):
    raw = pack_frame(frame)
    assert len(raw) == PACKED_FRAME_BYTES
    assert_same_frame(unpack_frame(raw), frame)


def test_a_simulator_frame_comes_back_as_the_subsystems_see_it_in_process():
    sat = Satellite(load_tle(DEFAULT_TLE_PATH)[1], seed=4)
    for _ in range(3):
        sat.step(1.0)
    frame = sat.frame()
    got = unpack_frame(pack_frame(frame))
    assert_same_frame(got, frame)
    assert check_frame(got) == []


def test_fields_the_table_does_not_declare_are_left_out_and_a_missing_one_is_refused():
    frame = Satellite(load_tle(DEFAULT_TLE_PATH)[1]).frame()
    assert set(unpack_frame(pack_frame({**frame, "rig_private_c": 3.0}))) == set(frame)
    del frame["gpu_temp_c"]
    with pytest.raises(KeyError, match="gpu_temp_c"):
        pack_frame(frame)
    with pytest.raises(ValueError, match="radiator_temp_c: 3 values, not 4"):
        pack_frame({**Satellite(load_tle(DEFAULT_TLE_PATH)[1]).frame(), "radiator_temp_c": np.zeros(3)})


@pytest.mark.parametrize("damage, why", [
    (lambda raw: raw[:-1], f"packed sensor frame of {PACKED_FRAME_BYTES - 1} bytes, not {PACKED_FRAME_BYTES}"),
    (lambda raw: raw + b"\0", f"of {PACKED_FRAME_BYTES + 1} bytes"),
    (lambda raw: {"time_s": 1.0}, "packed sensor frame of dict"),   # a frame in the rig's own (map) form
    (lambda raw: _put_scalar(raw, "eclipse", 0.5), "eclipse: 0.5 is not a bool"),
    (lambda raw: _put_byte(raw, "gpu_online", 2), "gpu_online: a byte that is neither 0 nor 1"),
])
def test_a_damaged_packed_frame_is_refused_with_its_reason(damage, why):
    raw = pack_frame(Satellite(load_tle(DEFAULT_TLE_PATH)[1]).frame())
    with pytest.raises(DecodeError, match=why):
        unpack_frame(damage(raw))


def _offset(name: str) -> int:
    """Where ``name`` starts, by the layout :func:`pack_frame` documents: the scalars as
    float64 in table order, then the arrays in table order, float64 or one byte per bool."""
    scalars = [f for f in SENSOR_FIELDS if f.shape == ()]
    offset = 8 * len(scalars)
    if name in [f.name for f in scalars]:
        return 8 * [f.name for f in scalars].index(name)
    for f in SENSOR_FIELDS:
        if f.name == name:
            return offset
        if f.shape != ():
            offset += int(np.prod(f.shape)) * (1 if f.dtype == "bool" else 8)
    raise KeyError(name)


def _put_scalar(raw: bytes, name: str, value: float) -> bytes:
    at = _offset(name)
    return raw[:at] + np.float64(value).tobytes() + raw[at + 8:]


def _put_byte(raw: bytes, name: str, value: int) -> bytes:
    at = _offset(name) + 5  # an element inside the array, not its first
    return raw[:at] + bytes([value]) + raw[at + 1:]


def test_the_layout_is_the_documented_one():
    frame = Satellite(load_tle(DEFAULT_TLE_PATH)[1]).frame()
    raw = pack_frame(frame)
    for f in SENSOR_FIELDS:
        at = _offset(f.name)
        if f.shape == ():
            assert np.frombuffer(raw, "<f8", 1, at)[0] == float(frame[f.name]), f.name
        elif f.dtype == "bool":
            assert raw[at:at + frame[f.name].size] == frame[f.name].astype(np.uint8).tobytes(), f.name
        else:
            assert raw[at:at + 8 * frame[f.name].size] == frame[f.name].astype("<f8").tobytes(), f.name
