"""What a node without node_exporter (Jetson) can tell about itself, read at scrape time:
thermal zone temperatures and memory pressure (PSI). What a host lacks is left out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any


def thermal_zones(root: Path = Path("/sys/class/thermal")) -> dict[str, Path]:
    """Each thermal zone's temperature file by its type (SoC, GPU, ...; the zone's folder name
    where it has no type)."""
    zones = {}
    for folder in sorted(root.glob("thermal_zone*")):
        if not (folder / "temp").is_file():
            continue
        try:
            name = (folder / "type").read_text().strip() or folder.name
        except OSError:
            name = folder.name
        zones[name if name not in zones else f"{name}-{folder.name}"] = folder / "temp"
    return zones


def read_temperature(path: Path) -> float | None:
    """A thermal zone's temperature in °C (the kernel gives millidegrees); None if unreadable."""
    try:
        return int(path.read_text().strip()) / 1000.0
    except (OSError, ValueError):
        return None


def memory_pressure(text: str) -> float | None:
    """The share of the last 10 s some task stalled on memory, from /proc/pressure/memory's
    `some avg10=0.12 avg60=...` line (percent there, a 0–1 ratio here)."""
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "some":
            values = dict(part.split("=", 1) for part in fields[1:] if "=" in part)
            try:
                return float(values["avg10"]) / 100.0
            except (KeyError, ValueError):
                return None
    return None


class NodeCollector:
    """Temperatures and memory pressure read when Prometheus scrapes, for hosts (Jetson) without
    node_exporter; what a host lacks is left out (`missing` says what)."""

    def __init__(
        self, thermal: Path = Path("/sys/class/thermal"), pressure: Path = Path("/proc/pressure/memory")
    ):
        self.zones = thermal_zones(thermal)
        self.pressure = pressure if pressure.is_file() else None
        self.missing = [
            what
            for what, present in (
                (f"temperatures (no {thermal}/thermal_zone*/temp)", self.zones),
                (f"memory pressure (no {pressure})", self.pressure),
            )
            if not present
        ]

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        if self.zones:
            family = GaugeMetricFamily(
                "optimize_node_temperature_celsius", "Thermal zone temperature", labels=["zone"]
            )
            for zone, path in self.zones.items():
                value = read_temperature(path)
                if value is not None:
                    family.add_metric([zone], value)
            yield family
        if self.pressure is not None:
            try:
                value = memory_pressure(self.pressure.read_text())
            except OSError:
                value = None
            if value is not None:
                family = GaugeMetricFamily(
                    "optimize_node_memory_pressure_ratio",
                    "Share of time some task stalled on memory (PSI)",
                    labels=["window"],
                )
                family.add_metric(["avg10"], value)
                yield family
