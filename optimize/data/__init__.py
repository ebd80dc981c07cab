"""Data sources: one file per source kind, registered by name (the part before ':')."""

from optimize.registry import Registry

DATA_SOURCES: Registry = Registry("data source")

from optimize.data import digits, imagefolder, npz, python, text  # noqa: E402,F401  (registration)
