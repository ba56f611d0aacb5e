"""A rich progress bar for long data work (teacher requests, near-duplicate passes), or nothing at all."""

from __future__ import annotations

from typing import Any, Self


class Bar:
    """A progress bar whose total may grow as the work learns its size. Disabled: every call is a no-op."""

    def __init__(self, enabled: bool, label: str, total: int = 0, unit: str = "") -> None:
        self._p: Any = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._p = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(unit),
                TimeElapsedColumn(),
                transient=False,
            )
            self._p.start()
            self._id = self._p.add_task(label, total=total)

    def grow(self, n: int) -> None:
        if self._p is not None:
            self._p.update(self._id, total=(self._p.tasks[0].total or 0) + n)

    def advance(self, n: int = 1) -> None:
        if self._p is not None:
            self._p.update(self._id, advance=n)

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()
            self._p = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
