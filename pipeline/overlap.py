"""A series' per-output work run on every core, results kept in the order it was handed in.

Why: the outputs of one series go through the same chain (harmonize, invert; encode,
store), whose heavy parts are numpy, SimpleITK and zlib passes that release the GIL. One
at a time they leave a core of a two-core worker idle; side by side they overlap. The
caller keeps doing what must stay in one thread (one model inference at a time, making
the next augmented CT) and hands each output's rest to ``Overlap``, which holds at most
one output per core in flight, so memory stays that of a few label maps.
Every function handed in returns its own failure row rather than raising.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Generic, TypeVar

from labels.slabs import workers

T = TypeVar("T")


class Overlap(Generic[T]):
    """Runs ``submit``ted calls in worker threads; ``results`` gives every call's result in submission order.

    Use as a context manager: leaving it waits for every call. One per series (threads are cheap next to a series).
    """

    def __init__(self, threads: int | None = None):
        self._threads = max(1, threads or workers())
        self._pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="bonehub-output")
        self._futures: list[Future[T]] = []

    def submit(self, function: Callable[..., T], *args: object) -> None:
        """Run ``function(*args)`` in a worker; first wait while one call per thread is still running."""
        running = [future for future in self._futures if not future.done()]
        while len(running) >= self._threads:
            wait(running, return_when=FIRST_COMPLETED)
            running = [future for future in running if not future.done()]
        self._futures.append(self._pool.submit(function, *args))

    def add(self, result: T) -> None:
        """A result the caller already has (a failure found before any work), kept in its place."""
        future: Future[T] = Future()
        future.set_result(result)
        self._futures.append(future)

    def results(self) -> list[T]:
        """Every result in submission order, once all calls are done (an exception a call raised is raised here)."""
        return [future.result() for future in self._futures]

    def __enter__(self) -> Overlap[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)
