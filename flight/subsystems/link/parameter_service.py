"""PUS-C service 20 (parameter management) at the link.

TC[20,1] answers with TM[20,2] from the parameter file (:mod:`flight.core.parameters`: the
owners keep it current; a parameter whose owner has not started reports its declared
default). TC[20,3] is checked against the parameter's declaration here, then becomes the
owner's ``set_parameter`` command through the dispatcher, verified as a TC[8,1]
(:meth:`flight.subsystems.link.verification.Verification.dispatch`); the owner applies and
stores the value before it completes.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from spacepackets.ecss.tc import PusTc

from flight.core.component import Dictionary
from flight.core.parameters import PARAMETERS_FILE, ParameterStore
from flight.spacelink import pus20_parameters as pus20
from flight.subsystems.link.routing import TcRoute
from flight.subsystems.link.state import TcSource
from flight.subsystems.link.verification import Verification


class ParameterService:
    """Service 20 over the parameter file in the run data directory."""

    def __init__(self, dictionary: Dictionary, verification: Verification) -> None:
        self._dictionary = dictionary
        self._verification = verification
        self._parameters: ParameterStore | None = None

    def open(self, data_path: Path) -> None:
        """Raises:
            sqlite3.Error: the parameter file cannot be opened.
        """
        self._parameters = ParameterStore(data_path / PARAMETERS_FILE)

    def close(self) -> None:
        if self._parameters is not None:
            self._parameters.close()
            self._parameters = None

    def routes(self) -> dict[tuple[int, int], TcRoute]:
        d = self._dictionary
        return {
            (pus20.PARAMETER_SERVICE, pus20.PARAMETER_REPORT_VALUES): TcRoute(
                lambda tc, data: pus20.parse_parameter_ids(d, data), self._report),
            (pus20.PARAMETER_SERVICE, pus20.PARAMETER_SET): TcRoute(
                lambda tc, data: pus20.parse_set_parameter(d, data), self._set),
        }

    def _report(self, source: TcSource, tc: PusTc, names: list[str]) -> None:
        try:
            stored = self._parameters.load(names)
        except sqlite3.Error as exc:
            self._verification.reject(source, tc, "EXECUTION_ERROR", f"cannot read the parameters: {exc}")
            return
        values = {n: stored.get(n, self._dictionary.parameters[n].default) for n in names}
        data = pus20.parameter_report_data(self._dictionary, values)
        self._verification.complete_locally(source, tc, lambda: [self._verification.report(
            tc, pus20.PARAMETER_SERVICE, pus20.PARAMETER_VALUE_REPORT, data)])

    def _set(self, source: TcSource, tc: PusTc, name_value: tuple[str, Any]) -> None:
        name, value = name_value
        owner, _, local = name.partition(".")
        self._verification.dispatch(source, tc, f"{owner}.set_parameter", {"name": local, "value": float(value)})
