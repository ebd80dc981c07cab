"""Tests of optimize.runtimes.tensorrt, one file per module of the package."""
