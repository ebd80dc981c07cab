"""The TensorRT logger the builder and the runner share: it keeps warnings and errors, so a
failed build or load can quote what TensorRT said, and forwards them to Python logging."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def collecting_logger(trt):
    """A TensorRT logger that keeps warnings and errors, so failures can quote TensorRT."""

    class CollectingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.messages: list[tuple[int, str]] = []

        def log(self, severity, msg):
            level = int(severity)
            if level <= int(trt.ILogger.Severity.WARNING):
                self.messages.append((level, msg))
                log.log(
                    logging.ERROR if level <= int(trt.ILogger.Severity.ERROR) else logging.WARNING,
                    "TensorRT: %s",
                    msg,
                )

        def errors(self) -> list[str]:
            return [msg for level, msg in self.messages if level <= int(trt.ILogger.Severity.ERROR)]

    return CollectingLogger()
