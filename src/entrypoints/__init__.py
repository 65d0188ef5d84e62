"""How imagecore is run: the HTTP API, the worker, the CLI and the container that wires them.

Importing it changes nothing in the process: the ``imagecore`` command sets
up libvips and its environment when it starts (`entrypoints.cli.main`), and
the process pool's children set up their own.
"""
