"""Imported by every Python process the tests start (conftest.py puts tests/ on their PYTHONPATH). At exit, Python's
last garbage collection walks every object still alive, torch's included: about a second per process, minutes over
the suite. Frozen objects are skipped, and the process ends the same way."""

import atexit
import gc

atexit.register(gc.freeze)
