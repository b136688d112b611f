"""Counting XLA compilations, so that "moving a slider compiles nothing" is checked, not assumed::

    with CompileCounter() as compiles:
        train(model, data, config)
    print(compiles.count)

JAX reports every backend compilation as a monitoring event; the counter listens only while it is entered.

And the one pattern by which this package keeps compiled programs: a bounded cache keyed by structure.
"""

from __future__ import annotations

import collections
import functools
import threading
from collections.abc import Callable

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


#: How many structures each cache of compiled programs keeps. A slider session visits a few dozen at most, so
#: it never recompiles what it saw recently; beyond that the least recently used program is dropped.
CACHE_SIZE = 64


class CompiledCache:
    """Compiled programs by structure: `cache(*key)` returns `build(*key)`, made once per key and kept while recent.

    Keys are structure only (hashable: a model's graphdef, an optimizer's spec), never arrays, and `build` must
    not capture arrays either: a dropped entry then frees its compiled program and everything it held.
    """

    def __init__(self, build: Callable, size: int = CACHE_SIZE):
        self._build, self._size = build, size
        self._entries: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()
        functools.update_wrapper(self, build)

    def __call__(self, *key):
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            value = self._entries[key] = self._build(*key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
            return value

    def __contains__(self, key) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)


def compiled_cache(build: Callable) -> CompiledCache:
    """Decorator: `build` cached by its arguments in a `CompiledCache` of `CACHE_SIZE` entries."""
    return CompiledCache(build)
