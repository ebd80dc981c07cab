"""Errors the user can act on, each carrying the exit code the CLI documents.

Exit codes: 0 success, 1 a gate failed or a regression was found, 2 the recipe or the
command line is invalid, 3 a stage, build or evaluation failed, 130 interrupted.
"""

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_INVALID = 2
EXIT_STAGE_FAILED = 3
EXIT_INTERRUPTED = 130


class OptimizeError(Exception):
    """Base class: the message is one line a user can act on."""

    exit_code = EXIT_STAGE_FAILED


class RecipeError(OptimizeError):
    """The recipe (or another user-supplied input file) is invalid; nothing ran."""

    exit_code = EXIT_INVALID


class UsageError(OptimizeError):
    """The command line asks for something that does not exist."""

    exit_code = EXIT_INVALID


class StageError(OptimizeError):
    """A stage failed while doing its work."""

    exit_code = EXIT_STAGE_FAILED

    def __init__(self, stage: str, message: str):
        super().__init__(f"stage '{stage}': {message}")
        self.stage = stage


class TargetError(OptimizeError):
    """A target could not be built or evaluated."""

    exit_code = EXIT_STAGE_FAILED

    def __init__(self, target: str, reason: str):
        super().__init__(f"target '{target}': {reason}")
        self.target = target
        self.reason = reason


class StoreError(OptimizeError):
    """The artifact store is unusable (permissions, disk, a foreign folder)."""

    exit_code = EXIT_STAGE_FAILED


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what was running when it came (nothing half-written is kept)."""

    def __init__(self, during: str):
        super().__init__(during)
        self.during = during


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """An exception as one line for a one-line error: its message's first line (cut to `limit`
    characters), or its type's name when it has no message."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__
