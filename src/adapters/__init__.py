"""Implementations of the imagecore ports, one module per technology."""
