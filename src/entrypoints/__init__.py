"""How imagecore is run: the HTTP API, the worker, the CLI and the container that wires them."""

import os

# libvips reads VIPS_WARNING once, as it starts, here and in every pool child
# (they inherit it): set, libvips prints none of its warnings about damaged
# files, which most camera photos give one or two of. They no longer pass
# through Python logging (see adapters.vips.guard.configure_vips), and a
# file that fails is reported by the service in its own words.
os.environ.setdefault("VIPS_WARNING", "1")
