"""Mission service 141 (key management, :mod:`flight.spacelink.pus141_keys`) at the link, over
the onboard key store of the :class:`~flight.subsystems.link.uplink.Authenticator`.

TC[141,1] unwraps the uploaded key with the key-encryption key it names (loaded from the
keys directory at start) while it is parsed, so a TC that fails does so before anything
changes: an unknown KEK or a block that does not unwrap (another KEK, altered bytes) is a
VALIDATION_ERROR. TC[141,1..3] change the store (durable before they complete; a refused
transition is a VALIDATION_ERROR and changes nothing) and announce each change with the
MEDIUM event ``link.key_changed``. TC[141,4] answers with TM[141,132], TC[141,7] with
TM[141,135]. A TC that changes the key it was signed with takes effect after it: a key may
deactivate itself while another is active. Not served in the unauthenticated lab mode (no
keys): there the service is not routed at all.
"""

from __future__ import annotations

from typing import Callable

from spacepackets.ecss.tc import PusTc

from flight.core.component import CommandError
from flight.spacelink import pus141_keys as pus141
from flight.spacelink.pus141_keys import KeyState
from flight.spacelink.sdls import StationKey
from flight.subsystems.link.key_store import StoredKey
from flight.subsystems.link.routing import TcRoute
from flight.subsystems.link.state import TcSource
from flight.subsystems.link.uplink import Authenticator
from flight.subsystems.link.verification import Verification


class KeyService:
    """Service 141 (see the module); ``event`` publishes ``link.key_changed`` outside the
    per-tick budget (every key change is reported)."""

    def __init__(self, auth: Authenticator, verification: Verification, event: Callable[..., None]) -> None:
        self._auth = auth
        self._verification = verification
        self._event = event

    def routes(self) -> dict[tuple[int, int], TcRoute]:
        s = pus141.KEY_SERVICE
        return {
            (s, pus141.OTAR): TcRoute(lambda tc, data: self._parse_otar(data), self._upload),
            (s, pus141.ACTIVATE): TcRoute(lambda tc, data: pus141.parse_spi(pus141.ACTIVATE, data), self._activate),
            (s, pus141.DEACTIVATE): TcRoute(lambda tc, data: pus141.parse_spi(pus141.DEACTIVATE, data),
                                            self._deactivate),
            (s, pus141.VERIFY): TcRoute(lambda tc, data: self._parse_verify(data), self._verify),
            (s, pus141.INVENTORY): TcRoute(lambda tc, data: pus141.parse_inventory(data), self._inventory),
        }

    # -- parsing: every check before anything changes ---------------------------------------------
    def _parse_otar(self, data: bytes) -> StationKey:
        otar = pus141.parse_otar(data)
        kek = self._auth.keks.get(otar.kek_id)
        if kek is None:
            raise CommandError("VALIDATION_ERROR", f"no key-encryption key {otar.kek_id} on board "
                                                   f"(known: {sorted(self._auth.keks) or 'none'})")
        try:
            spi, key = pus141.unwrap_key(kek, otar.wrapped)
        except ValueError as exc:
            raise CommandError("VALIDATION_ERROR", f"the wrapped key {exc}") from None
        if spi == 0:
            raise CommandError("VALIDATION_ERROR", "the wrapped key is for SPI 0, which holds no key")
        return StationKey(otar.name, spi, key)

    def _parse_verify(self, data: bytes) -> tuple[StoredKey, bytes]:
        spi, challenge = pus141.parse_verify(data)
        stored = self._auth.store.get(spi)
        if stored is None:
            raise CommandError("VALIDATION_ERROR", f"no key with SPI {spi} on board")
        if stored.state == KeyState.DEACTIVATED:
            raise CommandError("VALIDATION_ERROR", f"the key of SPI {spi} ({stored.key.station}) is deactivated")
        return stored, challenge

    # -- serving -------------------------------------------------------------------------------------
    def _changed(self, source: TcSource, tc: PusTc, spi: int, change: Callable[[], object]) -> None:
        if self._verification.complete_change(source, tc, "the key store", change):
            stored = self._auth.store.get(spi)
            self._event("key_changed", spi=spi, station=stored.key.station, state=stored.state.name,
                        service=tc.service, subtype=tc.message_subtype, peer=source.peer)

    def _upload(self, source: TcSource, tc: PusTc, key: StationKey) -> None:
        self._changed(source, tc, key.spi, lambda: self._auth.store.add(key))

    def _activate(self, source: TcSource, tc: PusTc, spi: int) -> None:
        self._changed(source, tc, spi, lambda: self._auth.store.activate(spi))

    def _deactivate(self, source: TcSource, tc: PusTc, spi: int) -> None:
        self._changed(source, tc, spi, lambda: self._auth.store.deactivate(spi))

    def _verify(self, source: TcSource, tc: PusTc, key_challenge: tuple[StoredKey, bytes]) -> None:
        stored, challenge = key_challenge
        spi = stored.key.spi
        data = pus141.verify_reply_data(spi, pus141.verification_response(stored.key.key, spi, challenge))
        self._verification.complete_locally(source, tc, lambda: [self._verification.report(
            tc, pus141.KEY_SERVICE, pus141.VERIFY_REPLY, data)])

    def _inventory(self, source: TcSource, tc: PusTc, spi_range: tuple[int, int]) -> None:
        data = pus141.inventory_reply_data(self._auth.store.inventory(*spi_range))
        self._verification.complete_locally(source, tc, lambda: [self._verification.report(
            tc, pus141.KEY_SERVICE, pus141.INVENTORY_REPLY, data)])
