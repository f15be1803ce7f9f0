"""Benchmarks of the fleet against its baselines and peers (see bench/README.md)."""
