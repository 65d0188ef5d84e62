"""The libvips image processor: its products, limits and metadata policy, and its pool.

A pool of child processes runs it (`pool`), so a crash in native code ends one file.
"""
