"""Counting XLA compilations, so that "moving a slider compiles nothing" is checked, not assumed.

    with CompileCounter() as compiles:
        train(model, data, config)
    print(compiles.count)

JAX reports every backend compilation as a monitoring event; the counter listens only while it is entered.
"""

from __future__ import annotations

import threading

import jax

_EVENT = "/jax/core/compile/backend_compile_duration"  # jax._src.dispatch.BACKEND_COMPILE_EVENT


class CompileCounter:
    """Counts XLA compilations in this process (any thread) between `__enter__` and `__exit__`."""

    def __init__(self):
        self.count = 0
        self._lock = threading.Lock()

    def _listen(self, event: str, duration_secs: float, **kwargs) -> None:
        if event == _EVENT:
            with self._lock:
                self.count += 1

    def __enter__(self) -> CompileCounter:
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def __exit__(self, *exc) -> None:
        jax.monitoring.unregister_event_duration_listener(self._listen)
