"""How honed shows things to people: one way to write a number and a confidence interval, one progress bar.

Every report, document and command summary writes its numbers through `fmt` / `fmt_ci`, so the same value reads
the same in gate.json's table, benchmarks.md and a monitor report (tests compare against `fmt`, not a retyping).
"""

from __future__ import annotations

import math
from typing import Any, Self

MISSING = "n/a"
"""What a number that was not measured reads as."""


def fmt(value: Any, digits: int = 3, *, signed: bool = False, missing: str = MISSING) -> str:
    """A number as honed writes it: floats to `digits` decimals (`signed`: with + or −); a float too small for
    that, but not zero, keeps its significant digits instead of reading as 0.000; None and NaN read `missing`."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    if isinstance(value, bool):
        return str(value)
    sign = "+" if signed else ""
    if isinstance(value, int):
        return f"{value:{sign}d}"
    if isinstance(value, float):
        if value != 0 and abs(value) < 0.5 * 10**-digits:
            return f"{value:{sign}.{digits}g}"
        return f"{value:{sign}.{digits}f}"
    return str(value)


def fmt_ci(ci: Any, digits: int = 3, *, signed: bool = False, missing: str = MISSING) -> str:
    """A confidence interval `[low, high]`; `missing` when there is none."""
    if not ci or len(ci) != 2:
        return missing
    return f"[{fmt(ci[0], digits, signed=signed)}, {fmt(ci[1], digits, signed=signed)}]"


class Bar:
    """A rich progress bar, or nothing at all (`enabled=False`: every call is a no-op, for library use and tests).

    The total may grow as the work learns its size (`grow`); `eta` adds the rate and the time left; `transient`
    clears the bar when it closes.
    """

    def __init__(self, enabled: bool, label: str, total: int = 0, unit: str = "", *, eta: bool = False,
                 transient: bool = False) -> None:
        self._p: Any = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            columns: list[Any] = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
            if unit:
                columns.append(TextColumn(unit))
            if eta:
                columns.append(TextColumn("{task.fields[rate]}"))
            columns.append(TimeElapsedColumn())
            if eta:
                columns += [TextColumn("ETA"), TimeRemainingColumn()]
            self._p = Progress(*columns, transient=transient)
            self._p.start()
            self._id = self._p.add_task(label, total=total, rate="")
            self._unit = unit or "items"
            self._eta = eta

    def grow(self, n: int) -> None:
        """The work turned out `n` steps longer."""
        if self._p is not None:
            self._p.update(self._id, total=(self._p.tasks[0].total or 0) + n)

    def advance(self, n: int = 1) -> None:
        if self._p is None:
            return
        self._p.update(self._id, advance=n)
        if self._eta:
            task = self._p.tasks[0]
            if task.elapsed:
                self._p.update(self._id, rate=f"{task.completed / task.elapsed:.2f} {self._unit}/s")

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()
            self._p = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
