"""The envelope codec: round trips, arrays, and that hostile bytes only ever raise DecodeError."""

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.core.messages import MAX_BODY_BYTES, DecodeError, Encoder, SeqTracker, decode


def test_round_trip_keeps_every_field_and_arrays():
    enc = Encoder("power")
    temps = np.linspace(20.0, 80.0, 72)
    topic, body = enc.encode("tm", "power.hk", {"soc": 0.8, "gpu_temp_c": temps, "on": True}, tick=7, t=7.0)
    msg = decode(body)
    assert topic == b"tm/power.hk"
    assert (msg.src, msg.seq, msg.tick, msg.t, msg.kind, msg.name) == ("power", 1, 7, 7.0, "tm", "power.hk")
    assert msg.data["soc"] == 0.8 and msg.data["on"] is True
    np.testing.assert_array_equal(msg.data["gpu_temp_c"], temps)
    assert enc.encode("tm", "power.hk", {})[1] and enc.seq["tm"] == 2


def test_bool_arrays_and_numpy_scalars_travel():
    body = Encoder("sim").encode("hw", "hal.frame", {"online": np.ones(3, bool), "x": np.float64(2.5)})[1]
    data = decode(body).data
    assert data["online"].dtype == np.bool_ and data["x"] == 2.5


def test_unknown_kind_and_unsupported_types_are_refused_at_encode():
    enc = Encoder("x")
    with pytest.raises(ValueError):
        enc.encode("bogus", "n", {})
    with pytest.raises(TypeError):
        enc.encode("tm", "n", {"a": object()})
    with pytest.raises(TypeError):
        enc.encode("tm", "n", {"a": np.zeros(2, dtype=np.complex128)})


@pytest.mark.parametrize("body", [
    b"", b"\xc1", msgpack.packb([1, 2, 3]), msgpack.packb({"v": 1}),
    msgpack.packb({"v": 2, "src": "a", "seq": 1, "tick": 0, "t": 0.0, "kind": "tm", "name": "n", "data": 0}),
    msgpack.packb({"v": 1, "src": "a", "seq": "1", "tick": 0, "t": 0.0, "kind": "tm", "name": "n", "data": 0}),
    msgpack.packb({"v": 1, "src": "a", "seq": 1, "tick": 0, "t": 0.0, "kind": "zz", "name": "n", "data": 0}),
    msgpack.packb({"v": 1, "src": "a", "seq": 1, "tick": 0, "t": 0.0, "kind": "tm", "name": "n",
                   "data": msgpack.ExtType(1, msgpack.packb(["<f8", [1000], b"short"]))}),
    msgpack.packb({"v": 1, "src": "a", "seq": 1, "tick": 0, "t": 0.0, "kind": "tm", "name": "n",
                   "data": msgpack.ExtType(1, msgpack.packb(["|O", [1], b"x"]))}),
    msgpack.packb({"v": 1, "src": "a", "seq": 1, "tick": 0, "t": 0.0, "kind": "tm", "name": "n",
                   "data": msgpack.ExtType(9, b"")}),
    b"\x00" * (MAX_BODY_BYTES + 1),
])
def test_malformed_bodies_raise_decode_error(body):
    with pytest.raises(DecodeError):
        decode(body)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_never_raise_anything_but_decode_error(body):
    try:
        decode(body)
    except DecodeError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_valid_bodies_never_raise_anything_but_decode_error(data):
    body = bytearray(Encoder("s").encode("hw", "hal.frame", {"a": np.arange(8.0), "b": [1, "x"]}, 3, 3.0)[1])
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(body) - 1))
        body[i] = data.draw(st.integers(0, 255))
    try:
        decode(bytes(body))
    except DecodeError:
        pass


def test_seq_gaps_are_counted_and_a_restart_is_not_a_gap():
    enc, tracker = Encoder("thermal"), SeqTracker()
    msgs = [decode(enc.encode("tm", "t", i)[1]) for i in range(6)]
    for m in (msgs[0], msgs[1], msgs[4], msgs[5]):
        tracker.observe(m)
    assert tracker.gaps == 2
    restarted = decode(Encoder("thermal").encode("tm", "t", 0)[1])
    assert tracker.observe(restarted) == 0 and tracker.gaps == 2
