"""What `optimize targets` says about the TensorRT stack: found, fits or not, what to install."""

from __future__ import annotations

from optimize.runtimes.tensorrt.install import install_plan
from optimize.runtimes.tensorrt.report import Found, report_lines
from tests.conftest import run_cli

CU12_HOST = install_plan("Linux", "x86_64", "550.54.15", None)
JETSON = install_plan("Linux", "aarch64", "540.4.0", "36.4.3")
A100 = "NVIDIA A100 (8.0), driver supports CUDA 12.4"


def test_a_host_that_fits():
    lines = report_lines(CU12_HOST, Found("12.9.4", "10.16.1.11", "cu12", A100))
    assert lines == [
        "TensorRT host: x86_64 host, NVIDIA driver 550.54.15; cuda-python 12.9.4; TensorRT 10.16.1.11 (cu12); "
        f"GPU: {A100}",
        "  fits: CUDA 12 line, TensorRT from PyPI (tensorrt-cu12 wheels)",
    ]


def test_the_cuda13_bindings_on_an_older_driver_say_exactly_what_to_install():
    gpu = "no CUDA GPU is usable: the NVIDIA driver supports CUDA 12.4, older than the CUDA 13.5 of the installed cuda-python"
    lines = report_lines(CU12_HOST, Found("13.5.0", None, None, gpu))
    assert lines[1] == (
        "  does not fit (CUDA 12 line, TensorRT from PyPI (tensorrt-cu12 wheels)): cuda-python 13.5.0 is installed; "
        "this host needs 12.x (its CUDA 13 runtime does not run here); TensorRT is not installed (from PyPI "
        "(tensorrt-cu12 wheels))"
    )
    assert lines[2] == "  install: pip install -c constraints/tensorrt-cu12.txt -e '.[tensorrt-cu12]'"
    assert lines[3].startswith("  note: torch from PyPI (the build extra) is built for CUDA 13")


def test_a_jetson_with_a_pypi_wheel_is_told_to_use_jetpack():
    lines = report_lines(
        JETSON, Found("12.6.2.post1", "10.16.1.11", "cu12", "Orin (8.7), driver supports CUDA 12.6")
    )
    assert "on a Jetson use JetPack's" in lines[1] and lines[2] == "  install: make setup-jetson"


def test_this_host_without_a_driver():
    result = run_cli("targets")
    assert result.returncode == 0
    report = [line for line in result.stdout.splitlines() if "TensorRT" in line and "│" not in line]
    assert report[0].startswith("TensorRT host: ")
    if "GPU: no CUDA GPU is visible: no NVIDIA driver is loaded" in report[0]:
        assert report[1] == (
            "  TensorRT cannot run here: no NVIDIA driver is loaded: install driver r580+ (CUDA 13, the default line) "
            "or r525+ (CUDA 12)"
        )
