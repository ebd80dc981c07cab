"""The one TensorRT logger of the process, and scopes that collect what it says during one call.

TensorRT keeps a single logger per process: the first Builder or Runtime created registers it,
and later objects given another logger still report to the first. So every Builder, Runtime and
parser here gets the same `shared_logger(trt)`, and a build or an engine load reads what TensorRT
said while it ran through `with collecting(trt) as said:`. Warnings and errors also go to Python
logging.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# TensorRT's ILogger.Severity values (stable since TensorRT 5): INTERNAL_ERROR 0, ERROR 1,
# WARNING 2, INFO 3, VERBOSE 4.
ERROR, WARNING, INFO = 1, 2, 3


@dataclass
class Messages:
    """What TensorRT logged within one scope, as (severity, text)."""

    lines: list[tuple[int, str]] = field(default_factory=list)

    def errors(self) -> list[str]:
        return [text for level, text in self.lines if level <= ERROR]

    def at(self, level: int) -> list[str]:
        return [text for severity, text in self.lines if severity == level]


_lock = threading.Lock()
_scopes: list[Messages] = []
_shared: dict[type, object] = {}  # by trt.ILogger: one in a real process (a stand-in has its own)


def _record(severity: int, text: str) -> None:
    """Hand one message to every open scope; warnings and errors also to Python logging."""
    if severity > INFO:
        return
    with _lock:
        for scope in _scopes:
            scope.lines.append((severity, text))
    if severity <= WARNING:
        log.log(logging.ERROR if severity <= ERROR else logging.WARNING, "TensorRT: %s", text)


def shared_logger(trt):
    """The process's TensorRT logger, made on first use with this `tensorrt` module."""
    with _lock:
        if trt.ILogger not in _shared:

            class CollectingLogger(trt.ILogger):
                def __init__(self):
                    trt.ILogger.__init__(self)

                def log(self, severity, msg):
                    _record(int(severity), str(msg))

            _shared[trt.ILogger] = CollectingLogger()
        return _shared[trt.ILogger]


@contextmanager
def collecting(trt):
    """Collect what TensorRT logs (up to INFO) while the block runs: `with collecting(trt) as said`."""
    shared_logger(trt)
    scope = Messages()
    with _lock:
        _scopes.append(scope)
    try:
        yield scope
    finally:
        with _lock:
            _scopes.remove(scope)
