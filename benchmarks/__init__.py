"""Speed, size and accuracy comparisons, run by `make bench` (python -m benchmarks [NAME ...])."""
