"""Run every benchmark module (benchmarks/bench_*.py), or those named: python -m benchmarks quantize."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import benchmarks
from optimize.console import out


def main(names: list[str]) -> int:
    available = sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules(benchmarks.__path__)
        if m.name.startswith("bench_")
    )
    unknown = [n for n in names if n not in available]
    if unknown:
        print(f"unknown benchmark {unknown[0]!r}; available: {', '.join(available)}", file=sys.stderr)
        return 2
    for name in names or available:
        started = time.perf_counter()
        out.rule(f"benchmark: {name}")
        importlib.import_module(f"benchmarks.bench_{name}").main()
        out.print(f"[dim]{name}: {time.perf_counter() - started:.0f}s[/]")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
