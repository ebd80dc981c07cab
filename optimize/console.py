"""Everything the user sees in the terminal: rich progress bars, tables and one-line messages.

Stages report progress through `Progress`, which knows nothing about how it is drawn, so the
same stage code runs under a live terminal, in CI logs and silently in tests.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

# Logs and CI captures are not terminals; give tables room there instead of rich's 80 columns.
# Messages are never wrapped (soft_wrap): CI logs and grep read a one-line message as one line,
# whatever the width; only tables are laid out to the width.
console = Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 200)
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


class Progress:
    """Progress reporting handed to stages: nested tasks (epochs, batches) and notes."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._rich: RichProgress | None = None

    @contextlib.contextmanager
    def live(self) -> Iterator[Progress]:
        if not self.enabled:
            yield self
            return
        self._rich = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
            transient=False,
        )
        with self._rich:
            yield self
        self._rich = None

    @contextlib.contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Callable[..., None]]:
        """Yields advance(n=1, status='') for a bar that disappears when done."""
        if self._rich is None:
            yield lambda n=1, status="": None
            return
        task_id = self._rich.add_task(description, total=total, status="")

        def advance(n: int = 1, status: str = "") -> None:
            self._rich.update(task_id, advance=n, status=status)

        try:
            yield advance
        finally:
            self._rich.remove_task(task_id)

    def note(self, message: str) -> None:
        if self.enabled:
            (self._rich.console if self._rich else console).print(message)
