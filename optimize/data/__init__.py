"""Data sources: one file per source kind, registered by name (the part before ':')."""

from optimize.data import digits, imagefolder, npz, python, text  # noqa: F401  (registration)
