"""Quiet logs: stdout carries only the results (with or without progress), `--quiet` prints
nothing else, torch's "No CUDA runtime is found" never reaches the terminal, and the closing line
counts the process's whole wall time, start-up included."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import REPO, run_cli, tiny_recipe_dict

CUDA_WARNING = "No CUDA runtime is found"
CLOSING = re.compile(r"^\d+ steps \(\d+ from cache\), \d+ targets in (\d+\.\d)s$")
# What `optimize run` prints on stdout besides the closing line (optimize/cli.py, _print_run):
# tables (titles and box-drawn rows), indented notes and headlines, the run folder, MLflow.
RESULT_LINE = re.compile(
    r"^([┏┃┡│└]|Stages · |Targets$|Against the baselines |Gates$|Original → final|  \S|run folder: |MLflow: )"
)


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=REPO, timeout=300
    )


def _quantizing_recipe(write_recipe):
    """NNCF (INT8) draws progress bars on stdout and imports its torch backend (the CUDA warning)."""
    stages = [*tiny_recipe_dict()["stages"], {"quantize": {"precision": "int8"}}]
    return write_recipe(tiny_recipe_dict(stages=stages, tracking={"enabled": False}))


def _results_only(stdout: str) -> float:
    """Asserts stdout is results and the closing line, last; returns the closing line's seconds."""
    *lines, closing = stdout.rstrip("\n").split("\n")
    assert [line for line in lines if not RESULT_LINE.match(line)] == []
    match = CLOSING.match(closing)
    assert match, closing
    return float(match.group(1))


def test_library_output_goes_beside_the_progress_display_or_nowhere():
    """NNCF's bars and log on stdout, the CUDA warning its import logs on stderr: what a run
    sees of them with the progress display on (stderr) and off (nothing)."""
    code = """
        import sys
        from optimize.library_output import library_output
        with library_output(shown=sys.argv[1] == "shown"):
            import nncf.torch  # on a CPU host with a CUDA toolkit: torch's warning
            from nncf.common.logging import nncf_logger
            from nncf.common.logging.track_progress import track
            for _ in track(range(3), description="Statistics collection"):
                pass
            nncf_logger.warning("from NNCF's log")
    """
    shown = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), "shown"], capture_output=True, text=True, cwd=REPO
    )
    hidden = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), "hidden"], capture_output=True, text=True, cwd=REPO
    )
    assert shown.returncode == 0 and hidden.returncode == 0, shown.stderr + hidden.stderr
    assert (
        shown.stdout == "" and "Statistics collection" in shown.stderr and "from NNCF's log" in shown.stderr
    )
    assert CUDA_WARNING not in shown.stderr
    assert (hidden.stdout, hidden.stderr) == ("", "")


def test_the_closing_line_counts_from_the_process_start():
    started = time.monotonic()
    result = _python(
        """
        import time
        time.sleep(1.5)  # start-up: what a run spends before optimize is imported
        from optimize.cli import seconds_since_start
        print(seconds_since_start())
        """
    )
    outside = time.monotonic() - started
    assert 1.5 <= float(result.stdout) <= outside


@pytest.mark.slow
def test_a_quiet_run_prints_only_the_tables_and_the_closing_line(write_recipe, artifacts):
    recipe = _quantizing_recipe(write_recipe)
    started = time.monotonic()
    result = run_cli("run", str(recipe), "--artifacts", str(artifacts), "--quiet")
    outside = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    reported = _results_only(result.stdout)
    run_id = (artifacts / "tiny" / "LATEST").read_text().strip()
    pipeline_seconds = json.loads((artifacts / "tiny" / run_id / "manifest.json").read_text())["seconds"]
    # the pipeline's own time plus start-up (Python, imports, the recipe: seconds), not more than ran
    assert pipeline_seconds + 0.5 < reported <= outside


@pytest.mark.slow
def test_a_run_with_progress_keeps_stdout_for_results_and_the_cuda_warning_off(write_recipe, artifacts):
    result = run_cli("run", str(_quantizing_recipe(write_recipe)), "--artifacts", str(artifacts))
    assert result.returncode == 0, result.stderr
    _results_only(result.stdout)
    assert "Statistics collection" in result.stderr  # NNCF's bars, beside our progress display
    assert CUDA_WARNING not in result.stderr and "INFO:nncf" not in result.stderr
