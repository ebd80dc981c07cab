"""What libraries print on their own (NNCF's progress bars on stdout, import-time warnings) kept
off the user's terminal: a run through the API prints nothing, and `--quiet` means quiet."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator

# Loggers whose warnings say nothing about a run: torch warns "No CUDA runtime is found" when
# NNCF imports its torch backend on a CPU-only host (it looks for a compiler toolchain).
IRRELEVANT_LOGGERS = ("torch.utils.cpp_extension",)


@contextlib.contextmanager
def library_output(shown: bool) -> Iterator[None]:
    """Library stdout passes through only when `shown` (the progress display is on)."""
    for name in IRRELEVANT_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    if shown:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield
