"""Benchmark placeholder."""
