"""The embedded repository on one SQLite file.

The repository (`repository`), its schema and migrations (`schema`), and the
checkpoints that keep its write-ahead log bounded (`checkpoint`).
"""
