"""Development and test tooling: the production servers started on loopback (not in the wheel)."""
