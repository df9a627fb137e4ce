"""The one stopwatch: seconds per named step, e.g. ``with timer("io"): ...``.

The pipeline times its steps with it (forward, stats, prune, io: per layer and for the run), the
CLI its phases (load, calibration, prune, eval, save) and the demo its tokenising and total.
"""

from __future__ import annotations

import contextlib
import time


class Timer:
    """Accumulates seconds per step, in the order the steps first ran."""

    def __init__(self, steps=()):
        self.seconds = dict.fromkeys(steps, 0.0)
        self.start = time.perf_counter()

    @contextlib.contextmanager
    def __call__(self, step: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add({step: time.perf_counter() - start})

    def add(self, seconds: dict[str, float]) -> None:
        """Add seconds measured elsewhere (a layer's timer to the run's)."""
        for step, value in seconds.items():
            self.seconds[step] = self.seconds.get(step, 0.0) + value

    def add_shares(self, seconds: dict[str, float], wall: float) -> None:
        """Add ``wall`` seconds shared among steps that ran at once on several threads, each in
        proportion to its own ``seconds`` (summed over the threads)."""
        busy = sum(seconds.values())
        if busy > 0:
            self.add({step: wall * value / busy for step, value in seconds.items()})

    def elapsed(self) -> float:
        """Seconds since the timer was made."""
        return time.perf_counter() - self.start

    def total(self) -> dict[str, float]:
        """The seconds per step and, as "total", the seconds since the timer was made."""
        return {**self.seconds, "total": self.elapsed()}
