"""One contract suite per port, run against every adapter by subclassing (never collected alone)."""
