"""Tooling that is not the product: the SMTP sink, the benchmarks and the evaluation harness.

Run from a source checkout (`python -m tools.bench`, `make bench`); none of it is in the wheel or the image.
"""
