"""``flight ground watch``: every component's housekeeping (TM[3,25]) as a live table with
units, limit colours and ages, and the latest events (TM[5,x])."""

from __future__ import annotations

import argparse
import math
import time
from collections import deque
from typing import Any

from flight.ground.cli.common import EXIT_FAILED, EXIT_OK, connect, load_dictionary, utc_text
from flight.spacelink.pus3_housekeeping import HkReport
from flight.spacelink.pus5_events import EventReport

WATCH_EVENTS = 12
"""Most recent events shown under the housekeeping table."""
LIMIT_STYLE = {"red": "bold red", "yellow": "yellow", "ok": ""}
LIMIT_MARK = {"red": "RED", "yellow": "yellow", "ok": ""}
"""The limit column's text, so a value past its limits shows without colour too (piped, logged)."""
UTC_SUFFIX = "utc_unix_s"
"""A channel named ``..utc_unix_s`` holds a UTC instant as Unix seconds: shown as ISO 8601
date and time (:func:`~flight.ground.cli.common.utc_text`), units ``UTC``."""


def _cell(channel, value: Any) -> tuple[str, str]:
    """Text and limit state of one channel value; an array shows min/mean/max, coloured by
    its worst element (a bool array: how many are true)."""
    if isinstance(value, list):
        if not value:
            return "[]", "ok"
        if channel.type == "bool":
            return f"[{len(value)}] {sum(value)} true", "ok"
        states = {channel.limit_state(v) for v in value}
        state = "red" if "red" in states else "yellow" if "yellow" in states else "ok"
        return (f"[{len(value)}] min {min(value):.4g} mean {sum(value) / len(value):.4g} "
                f"max {max(value):.4g}", state)
    if isinstance(value, bool):
        return ("true" if value else "false"), "ok"
    if channel.name.endswith(UTC_SUFFIX) and isinstance(value, (int, float)) and math.isfinite(value):
        return utc_text(value), channel.limit_state(value)
    if isinstance(value, (int, float)):
        text = f"{value:.6g}" if isinstance(value, float) else str(value)
        return text, channel.limit_state(value)
    return str(value), "ok"


class WatchView:
    """What ``watch`` shows: the latest report of each component and the recent events."""

    def __init__(self, endpoint: str, stale_s: float) -> None:
        self.endpoint = endpoint
        self.stale_s = stale_s
        self.hk: dict[str, Any] = {}
        self.events: deque = deque(maxlen=WATCH_EVENTS)
        self.onboard_utc = 0.0
        self.last_rx = 0.0

    def add(self, report: Any) -> None:
        self.onboard_utc = max(self.onboard_utc, report.utc_unix_s)
        self.last_rx = time.monotonic()
        if isinstance(report, HkReport):
            held = self.hk.get(report.component.name)
            # a pass brings the stored backlog after real time: an older sample never hides a newer one
            if held is None or report.utc_unix_s >= held.utc_unix_s:
                self.hk[report.component.name] = report
        else:
            self.events.append(report)
            if len(self.events) > 1 and report.utc_unix_s < self.events[-2].utc_unix_s:
                self.events = deque(sorted(self.events, key=lambda e: e.utc_unix_s), maxlen=WATCH_EVENTS)

    def render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        quiet = f"{time.monotonic() - self.last_rx:.1f} s ago" if self.last_rx else "nothing yet"
        onboard = utc_text(self.onboard_utc) if self.onboard_utc else "-"
        table = Table(title=f"housekeeping from {self.endpoint} — onboard {onboard} UTC, last packet {quiet}",
                      title_justify="left")
        for col, justify in (("channel", "left"), ("value", "right"), ("units", "left"), ("limit", "left"),
                             ("age s", "right")):
            table.add_column(col, justify=justify)
        for name in sorted(self.hk):
            report = self.hk[name]
            age = self.onboard_utc - report.utc_unix_s
            for ch in report.component.telemetry:
                text, state = _cell(ch, report.values[ch.name])
                style = "dim" if age > self.stale_s else LIMIT_STYLE[state]
                table.add_row(f"{name}.{ch.name}", Text(text, style=LIMIT_STYLE[state]),
                              "UTC" if ch.name.endswith(UTC_SUFFIX) else ch.units,
                              Text(LIMIT_MARK[state], style=LIMIT_STYLE[state]),
                              f"{age:.0f} stale" if age > self.stale_s else f"{age:.0f}", style=style)
        severity_style = {"INFO": "", "LOW": "cyan", "MEDIUM": "yellow", "HIGH": "bold red"}
        events = Table(title="events", title_justify="left", show_header=False)
        events.add_column("time")
        events.add_column("severity")
        events.add_column("event")
        for ev in self.events:
            events.add_row(utc_text(ev.utc_unix_s), Text(ev.severity, style=severity_style[ev.severity]),
                           f"{ev.name}: {ev.message}")
        return Group(table, events)


def cmd_watch(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    client = connect(args, load_dictionary(), sign=False)  # watch only listens: nothing to sign
    if client is None:
        return EXIT_FAILED
    view = WatchView(args.link, args.stale)
    received = 0
    deadline = time.monotonic() + args.timeout if args.count else None
    try:
        with client, Live(view.render(), console=Console(), refresh_per_second=4) as live:
            while args.count is None or received < args.count:
                if deadline is not None and time.monotonic() > deadline:
                    live.console.print(f"only {received} of {args.count} packets within {args.timeout:g} s")
                    return EXIT_FAILED
                report = client.receive(0.25)
                if isinstance(report, (HkReport, EventReport)):
                    view.add(report)
                    received += 1
                live.update(view.render())
    except KeyboardInterrupt:
        pass
    except ConnectionError as exc:
        print(exc)
        return EXIT_FAILED
    return EXIT_OK
