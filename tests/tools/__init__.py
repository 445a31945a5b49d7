"""Tests of tools/ (benchmarks, measurement, capacity, asset building)."""
