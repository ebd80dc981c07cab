"""Install resolution per platform (no TensorRT, no GPU): x86 drivers r535-r580, Jetson JetPack
5/6/7, what an installed environment lacks, and the files the plans name exist and agree."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from optimize.runtimes.tensorrt.install import fit_problems, install_plan, jetpack_of

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    "machine, driver, l4t, cuda, extra, constraints",
    [
        ("x86_64", "535.183.01", None, 12, "tensorrt-cu12", "constraints/tensorrt-cu12.txt"),
        ("x86_64", "550.54.15", None, 12, "tensorrt-cu12", "constraints/tensorrt-cu12.txt"),
        ("x86_64", "575.57.08", None, 12, "tensorrt-cu12", "constraints/tensorrt-cu12.txt"),
        ("x86_64", "580.65.06", None, 13, "tensorrt", "constraints/tensorrt-cu13.txt"),
        ("aarch64", "590.10", None, 13, "tensorrt", "constraints/tensorrt-cu13.txt"),  # an Arm server
        ("aarch64", "540.4.0", "36.4.3", 12, "jetson", "constraints/jetson-jp6.txt"),  # JetPack 6.2
        ("aarch64", "540.4.0", "36.4.0", 12, "jetson", "constraints/jetson-jp6.txt"),  # JetPack 6.1
        ("aarch64", "580.00", "38.2.0", 13, "jetson", "constraints/jetson-jp7.txt"),  # JetPack 7
    ],
)
def test_supported_hosts(machine, driver, l4t, cuda, extra, constraints):
    plan = install_plan("Linux", machine, driver, l4t)
    assert plan.problem is None
    assert (plan.cuda_major, plan.extra, plan.constraints) == (cuda, extra, constraints)
    expected = {
        "jetson": "make setup-jetson",
        "tensorrt": f"pip install -c constraints.txt -c {constraints} -e '.[build,dev,tensorrt]'",
        "tensorrt-cu12": f"pip install -c {constraints} -e '.[tensorrt-cu12]'",
    }
    assert plan.command == expected[extra]
    if l4t:
        assert "JetPack" in plan.tensorrt_from and "PyPI" not in plan.tensorrt_from
    else:
        assert f"tensorrt-cu{cuda}" in plan.tensorrt_from


def test_cuda12_hosts_are_told_about_torch():
    (note,) = install_plan("Linux", "x86_64", "550.54.15", None).notes
    assert "driver r580+" in note and "optimize rebuild" in note
    assert install_plan("Linux", "x86_64", "580.65.06", None).notes == ()


@pytest.mark.parametrize(
    "system, machine, driver, l4t, message",
    [
        ("Linux", "aarch64", "35.5", "35.5.0", "JetPack 5 ships TensorRT 8.5 and CUDA 11.4"),
        ("Linux", "aarch64", "540.3.0", "36.3.0", "JetPack 6.0 ships TensorRT 8.6"),
        ("Linux", "aarch64", None, "34.1.1", "L4T 34.1.1 is no JetPack release"),
        ("Linux", "x86_64", "470.256.02", None, "older than CUDA 12 needs (r525+)"),
        ("Linux", "x86_64", None, None, "no NVIDIA driver is loaded"),
        ("Darwin", "arm64", None, None, "Linux x86_64 or aarch64"),
    ],
)
def test_unsupported_hosts_say_why(system, machine, driver, l4t, message):
    plan = install_plan(system, machine, driver, l4t)
    assert message in plan.problem and plan.command is None
    assert fit_problems(plan, "13.5.0", "10.3.0", "system") == [plan.problem]


def test_jetpack_releases():
    assert [jetpack_of(v) for v in ("35.6.0", "36.3.0", "36.4.3", "36.5.0", "38.2.1", "37.0")] == [
        "5",
        "6.0",
        "6.1+",
        "6.1+",
        "7",
        None,
    ]


def test_fit_problems_name_what_to_change():
    cu12 = install_plan("Linux", "x86_64", "550.54.15", None)
    assert fit_problems(cu12, "12.9.4", "10.16.1.11", "cu12") == []
    wrong = fit_problems(cu12, "13.5.0", "10.16.1.11", "cu13")
    assert "cuda-python 13.5.0 is installed; this host needs 12.x" in wrong[0]
    assert "built for cu13; this host needs cu12" in wrong[1]
    assert fit_problems(cu12, None, None, None) == [
        "cuda-python is not installed (needs 12.x)",
        "TensorRT is not installed (from PyPI (tensorrt-cu12 wheels))",
    ]
    jetson = install_plan(
        "Linux",
        "aarch64",
        "540.4.0",
        "36.4.3",
    )
    assert fit_problems(jetson, "12.6.2.post1", "10.3.0", "system") == []
    assert (
        "comes from a PyPI wheel (cu12); on a Jetson use JetPack's"
        in fit_problems(jetson, "12.6.2.post1", "10.16.1.11", "cu12")[0]
    )
    assert "needs 12.x" in fit_problems(jetson, "13.5.0", "10.3.0", "system")[0]


def test_the_files_the_plans_name_exist_and_pin_their_line():
    """Every constraints file pins cuda-python/cuda-bindings of its plan's major; each extra
    exists in pyproject.toml with the same major bound."""
    pyproject = (REPO / "pyproject.toml").read_text()
    hosts = [
        ("x86_64", "550.1", None),
        ("x86_64", "580.1", None),
        ("aarch64", "540.4.0", "36.4.3"),
        ("aarch64", "580.1", "38.2.0"),
    ]
    for machine, driver, l4t in hosts:
        plan = install_plan("Linux", machine, driver, l4t)
        pins = (REPO / plan.constraints).read_text()
        majors = {int(m) for m in re.findall(r"^cuda-(?:python|bindings)==(\d+)\.", pins, re.M)}
        assert majors == {plan.cuda_major}, plan.constraints
        assert re.search(rf"^{re.escape(plan.extra)} = \[", pyproject, re.M), plan.extra
    constraints = (REPO / "constraints.txt").read_text()
    cu13 = (REPO / "constraints/tensorrt-cu13.txt").read_text()
    assert re.search(r"^cuda-bindings==(.*)$", constraints, re.M).group(1) == re.search(
        r"^cuda-bindings==(.*)$", cu13, re.M
    ).group(1)  # the default install and the CUDA 13 TensorRT line combine


def test_setup_jetson_script_refuses_other_hosts():
    """The script `make setup-jetson` runs needs only the standard library and exits 2 off a Jetson."""
    if Path("/etc/nv_tegra_release").exists():
        pytest.skip("this host is a Jetson")
    result = subprocess.run(
        [sys.executable, "-I", str(REPO / "optimize/runtimes/tensorrt/install.py")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
