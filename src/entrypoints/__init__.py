"""How imagecore is run: the HTTP API, the worker, the CLI and the container that wires them."""
