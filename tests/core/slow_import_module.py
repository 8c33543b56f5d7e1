"""A module that takes 0.6 s to import (tests/core/test_probe_engine.py: an import still running in another thread)."""

import time

time.sleep(0.6)
Tensor = object
