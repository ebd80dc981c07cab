"""What every `optimize` command shares: error handling (one line and an exit code, a traceback
only with --debug), logging set-up and the common options."""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

import click
from rich.markup import escape

from optimize.api import DEFAULT_ARTIFACTS
from optimize.console import console
from optimize.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STAGE_FAILED,
    OptimizeError,
)


def _configure(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s: %(message)s" if debug else "warning: %(message)s",
        stream=sys.stderr,
    )
    # Not NNCF's logger: NNCF creates it as its own Logger subclass and sets its level when it is
    # imported; its INFO tables go with every library's INFO below.
    for noisy in (
        "mlflow",
        "alembic",
        "urllib3",
        "urllib3.connectionpool",
        "matplotlib",
        "PIL",
        "httpx",
    ):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.ERROR)
    logging.disable(logging.NOTSET if debug else logging.INFO)
    if not debug:
        warnings.filterwarnings("ignore")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def seconds_since_start() -> float:
    """Wall time since this process started, start-up and imports included (Linux: the start
    time the kernel recorded, in clock ticks since boot)."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
    return time.clock_gettime(time.CLOCK_BOOTTIME) - started


def handle_errors(command):
    """One line per problem and a documented exit code; the traceback only with --debug."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        debug = kwargs.get("debug", False)
        _configure(debug)
        try:
            code = command(*args, **kwargs)
        except OptimizeError as exc:
            if debug:
                traceback.print_exc()
            for line in str(exc).split("\n"):
                console.print(f"[red]error:[/] {escape(line)}")
            sys.exit(exc.exit_code)
        except ModuleNotFoundError as exc:  # a node install (optimize[node]) asked to build
            if debug:
                traceback.print_exc()
            need = f"this install has no {exc.name}, which `optimize {command.__name__}` needs: install the build "
            console.print(
                f"[red]error:[/] {escape(need + 'libraries with pip install ' + repr('optimize[build]'))}"
            )
            sys.exit(EXIT_STAGE_FAILED)
        except KeyboardInterrupt as exc:
            during = getattr(exc, "during", "start-up")
            console.print(f"[yellow]interrupted[/] during {during}; nothing half-written was kept")
            sys.exit(EXIT_INTERRUPTED)
        except Exception as exc:  # a bug or an unexpected library failure
            if debug:
                traceback.print_exc()
            console.print(
                f"[red]error:[/] {escape(f'{type(exc).__name__}: {exc}')} (run with --debug for the traceback)"
            )
            sys.exit(EXIT_STAGE_FAILED)
        sys.exit(code or EXIT_OK)

    return wrapper


debug_option = click.option("--debug", is_flag=True, help="show tracebacks and library logs")


def artifacts_option(help_text: str):
    """--artifacts, as every command that reads or writes the artifacts folder takes it."""
    return click.option(
        "--artifacts",
        type=click.Path(path_type=Path),
        metavar="DIR",
        default=DEFAULT_ARTIFACTS,
        show_default=True,
        envvar="OPTIMIZE_ARTIFACTS",
        help=help_text,
    )


def pushgateway_option(what: str):
    """--pushgateway, as run and rebuild take it."""
    return click.option(
        "--pushgateway",
        metavar="URL",
        envvar="OPTIMIZE_PUSHGATEWAY",
        help=f"push {what} metrics to this Prometheus Pushgateway (a failed push is a warning)",
    )
