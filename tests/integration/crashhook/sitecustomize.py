"""Installs the test-only decoder killer in every Python process started with this folder
on ``PYTHONPATH`` and ``IMAGECORE_TEST_CRASH_MARKER`` set (see ``tests/crash_hook.py``).

Python imports ``sitecustomize`` at start-up, in the served ``imagecore``
process and in each spawned pool child alike, so the parent hands its
children `crash_hook.run_or_crash` and the children can unpickle it.
"""

import os

if os.environ.get("IMAGECORE_TEST_CRASH_MARKER"):
    import crash_hook

    crash_hook.install()
