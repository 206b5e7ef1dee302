"""Benchmarks: each module measures our code and the raw driver doing the same work in one run."""
