"""Work beside work: a computation in a daemon thread while the caller goes on (only on plain data)."""

from __future__ import annotations

import os
from typing import Any, Callable

__all__ = ["Beside", "spare_cpus"]


class Beside:
    """``fn(stop)`` computed in a daemon thread while the caller does other work (the t-SNE beside the probe
    training: openTSNE's Barnes-Hut loop and torch's kernels both run without the GIL, so on two cores
    they overlap). ``stop()`` turns True once :meth:`cancel` is called; :meth:`result` waits, calling
    ``waiting()`` about ten times a second (it may raise, e.g. ``Cancelled``: the computation is then
    told to stop), and returns the value or raises the computation's own exception."""

    def __init__(self, fn: Callable[[Callable[[], bool]], Any], name: str):
        import threading

        self._stop = threading.Event()
        self._out: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, args=(fn,), name=name, daemon=True)
        self._thread.start()

    def _run(self, fn) -> None:
        try:
            self._out["value"] = fn(self._stop.is_set)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by result()
            self._out["error"] = exc

    def cancel(self) -> None:
        self._stop.set()

    def result(self, waiting: Callable[[], None] | None = None) -> Any:
        try:
            while self._thread.is_alive():
                self._thread.join(0.1)
                if waiting is not None:
                    waiting()
        except BaseException:
            self.cancel()
            raise
        if "error" in self._out:
            raise self._out["error"]
        return self._out["value"]


def spare_cpus() -> int:
    """CPUs this process may run on, besides the one it is using (0 on one CPU; ``taskset`` limits it)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(0, n - 1)
