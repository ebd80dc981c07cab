"""What libraries print on their own (NNCF's progress bars and its logger, both on stdout) kept off
stdout, which carries only results: beside the progress display on stderr when it is on, nowhere
when it is off, so a run through the API prints nothing and `--quiet` means quiet."""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Iterator

# Loggers whose warnings say nothing about a run: torch warns "No CUDA runtime is found" when
# NNCF imports its torch backend on a CPU-only host (it looks for a compiler toolchain).
IRRELEVANT_LOGGERS = ("torch.utils.cpp_extension",)


@contextlib.contextmanager
def library_output(shown: bool) -> Iterator[None]:
    """Library stdout goes to stderr when `shown` (the progress display is on), else nowhere. A
    library that binds sys.stdout when it is first imported (NNCF's log handler) keeps the
    stream it was imported under."""
    for name in IRRELEVANT_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    with contextlib.redirect_stdout(sys.stderr if shown else io.StringIO()):
        yield
