"""Device classes: the built-in table (device_classes.yaml) plus classes a recipe defines."""

from __future__ import annotations

from functools import cache
from importlib import resources

import yaml
from pydantic import TypeAdapter

from optimize.targets.device_class import DeviceClass

_ADAPTER = TypeAdapter(list[DeviceClass])


@cache
def builtin_device_classes() -> dict[str, DeviceClass]:
    text = resources.files("optimize.targets").joinpath("device_classes.yaml").read_text(encoding="utf-8")
    return {
        device_class.name: device_class for device_class in _ADAPTER.validate_python(yaml.safe_load(text))
    }


def device_classes_for(recipe_classes: list[DeviceClass]) -> dict[str, DeviceClass]:
    """Built-ins, overridden or extended by the recipe's own definitions."""
    table = dict(builtin_device_classes())
    table.update({device_class.name: device_class for device_class in recipe_classes})
    return table
