"""Parameters (PUS service 20) declared in the dictionary next to their owner: validated
against the declaration, applied to the attribute they govern, persisted so a restarted owner
flies on with them; a refused value changes nothing."""

import sqlite3

import pytest

from flight.core.bus import BusAddress
from flight.core.config import RunConfig
from flight.core.component import CommandError, Parameter
from flight.core.dictionary import full_dictionary
from flight.core.parameters import PARAMETERS_FILE, ParameterStore
from flight.subsystems.thermal.controller import DEFAULT_SETPOINT_C, ThermalController

BUS = BusAddress("inproc://unused-pub", "inproc://unused-sub", "inproc://unused-cmd")


def _thermal(tmp_path) -> tuple[ThermalController, list]:
    emitted = []
    owner = ThermalController(RunConfig(bus=BUS, data_dir=str(tmp_path)), lambda *m: emitted.append(m))
    owner.load_parameters()
    return owner, emitted


def _stored(tmp_path) -> dict:
    store = ParameterStore(tmp_path / PARAMETERS_FILE)
    try:
        return store.load()
    finally:
        store.close()


def test_every_declared_parameter_has_an_id_a_range_holding_its_default_and_a_set_command():
    d = full_dictionary()
    assert {"power.soc_floor", "thermal.setpoint_c", "thermal.valves_kp", "thermal.pump_ki",
            "link.hk_interval_s"} <= set(d.parameters)
    for name, par in d.parameters.items():
        assert d.parameter_ids[d.parameter_id(name)] == name
        assert par.lo <= par.default <= par.hi
        assert f"{name.partition('.')[0]}.set_parameter" in d.commands
    assert [p["name"] for p in d.to_json()["components"]["thermal"]["parameters"]][:2] == [
        "thermal.setpoint_c", "thermal.gpu_target_c"]


@pytest.mark.parametrize("kwargs, error", [
    (dict(type="str"), ValueError),
    (dict(local_id=0), ValueError),
    (dict(default=99.0), CommandError),
])
def test_a_bad_declaration_is_refused_at_import(kwargs, error):
    fields = dict(name="x", local_id=1, type="float", units="s", lo=0.0, hi=10.0, default=1.0) | kwargs
    with pytest.raises(error):
        Parameter(**fields)


def test_values_are_checked_against_the_declaration():
    rate = Parameter("rate", 1, "int", "count", 1, 5, 2)
    flag = Parameter("flag", 2, "bool", "", 0, 1, False)
    assert rate.validate(3.0) == 3 and flag.validate(1) is True
    for par, value, code in ((rate, 6, "VALIDATION_ERROR"), (rate, 2.5, "FORMAT_ERROR"),
                             (flag, 2, "FORMAT_ERROR"), (rate, float("nan"), "FORMAT_ERROR")):
        with pytest.raises(CommandError) as exc:
            par.validate(value)
        assert exc.value.code == code, (par.name, value)


def test_set_parameter_applies_and_persists_before_it_completes(tmp_path):
    owner, _ = _thermal(tmp_path)
    assert owner.execute("set_parameter", {"name": "setpoint_c", "value": 31.5}) == "thermal.setpoint_c = 31.5 degC"
    assert owner.setpoint_c == 31.5
    assert _stored(tmp_path)["thermal.setpoint_c"] == 31.5
    owner.execute("set_parameter", {"name": "valves_ki", "value": 0.01})
    assert list(owner.pid.ki[:4]) == [0.01] * 4 and owner.pid.ki[4] == 0.002, "one loop family, not the other"
    assert _stored(tmp_path)["thermal.valves_ki"] == 0.01


def test_an_out_of_range_value_fails_and_changes_nothing(tmp_path):
    owner, _ = _thermal(tmp_path)
    before = _stored(tmp_path)
    for args in ({"name": "setpoint_c", "value": 45.5}, {"name": "pump_kd", "value": -1.0},
                 {"name": "no_such", "value": 1.0}, {"name": "setpoint_c", "value": "30"}):
        with pytest.raises(CommandError) as exc:
            owner.execute("set_parameter", args)
        assert exc.value.code in ("VALIDATION_ERROR", "FORMAT_ERROR")
    assert owner.setpoint_c == DEFAULT_SETPOINT_C
    assert _stored(tmp_path) == before


def test_a_command_that_moves_a_parameter_persists_it_too(tmp_path):
    owner, _ = _thermal(tmp_path)
    owner.execute("set_setpoint", {"setpoint_c": 20.0})
    owner.execute("set_gains", {"loop": "pump", "kp": 0.07, "ki": 0.003, "kd": 1.0})
    stored = _stored(tmp_path)
    assert stored["thermal.setpoint_c"] == 20.0
    assert (stored["thermal.pump_kp"], stored["thermal.pump_ki"], stored["thermal.pump_kd"]) == (0.07, 0.003, 1.0)


def test_a_restarted_owner_flies_on_with_the_persisted_values(tmp_path):
    owner, _ = _thermal(tmp_path)
    owner.execute("set_parameter", {"name": "gpu_target_c", "value": 75.0})
    owner.execute("set_parameter", {"name": "pump_kp", "value": 0.2})
    restarted, _ = _thermal(tmp_path)
    assert restarted.gpu_target_c == 75.0 and restarted.pid.kp[4] == 0.2
    assert restarted.setpoint_c == DEFAULT_SETPOINT_C


def test_a_stored_value_the_declaration_no_longer_allows_is_ignored(tmp_path):
    _thermal(tmp_path)
    db = sqlite3.connect(tmp_path / PARAMETERS_FILE)
    with db:
        db.execute("UPDATE parameter SET value = '99.0' WHERE name = 'thermal.setpoint_c'")
    db.close()
    restarted, _ = _thermal(tmp_path)
    assert restarted.setpoint_c == DEFAULT_SETPOINT_C
    assert _stored(tmp_path)["thermal.setpoint_c"] == DEFAULT_SETPOINT_C, "the store follows the live value"


def test_an_unwritable_store_is_reported_and_the_owner_flies_on(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    emitted = []
    owner = ThermalController(RunConfig(bus=BUS, data_dir=str(blocker)), lambda *m: emitted.append(m))
    owner.load_parameters()
    assert owner.execute("set_parameter", {"name": "setpoint_c", "value": 30.0}).endswith("30.0 degC")
    assert [m[1] for m in emitted if m[0] == "ev"] == ["thermal.parameter_store_failed"]
