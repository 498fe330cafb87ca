"""CPU-time budgets in tests: a block's thread CPU time without the garbage collector's pauses.

Late in a long run a collection of the garbage earlier tests left can land inside a timed block
and count against it (CI once saw 0.68 s for a 0.01 s parse). Collection is switched off for the
block only, so what is measured is the code under test."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Timing:
    started: float = 0.0
    elapsed: float = 0.0


@contextmanager
def cpu_time() -> Iterator[Timing]:
    enabled = gc.isenabled()
    gc.disable()
    timing = Timing(started=time.thread_time())
    try:
        yield timing
    finally:
        timing.elapsed = time.thread_time() - timing.started
        if enabled:
            gc.enable()
