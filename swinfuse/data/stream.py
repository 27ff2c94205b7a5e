"""Overlap disk I/O with the forward pass: a read-ahead iterator and an asynchronous writer.

Each runs one background thread behind a small bounded queue, so a batch holds only a few images in
memory however many pairs it has. Decoding (cv2) and the forward pass (torch) release the GIL, so
threads are enough; worker processes would only add start-up cost and pickling.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

import numpy as np

from swinfuse.data.io import write_image_atomic

T = TypeVar("T")
_DONE = object()


def error_line(error: BaseException) -> str:
    """One line describing an error: its first message line, or its type when it has no message."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@dataclass
class Prefetched(Generic[T]):
    """The result of loading one item: value, or error (a one-line reason) when loading failed."""

    item: T
    value: Any
    error: str | None
    load_ms: float


def prefetch(items: Iterable[T], load: Callable[[T], Any], *, depth: int = 2) -> Iterator[Prefetched[T]]:
    """Yield Prefetched(item, load(item), ...) in order, loading up to `depth` items ahead in a thread.

    A load that raises yields a record with error set, and the stream goes on; items that raise (a generator
    decoding a stream) yield a last record with item None and the error. Leaving the loop early (break, an
    exception, Ctrl+C) stops the thread; load_ms includes producing the item.
    """
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(record) -> bool:
        # a bounded put that gives up when the consumer has gone, so the thread can end
        while not stop.is_set():
            try:
                ready.put(record, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        iterator = iter(items)
        while True:
            start = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                break
            except Exception as e:  # the items themselves failed (a video that ends early): the last record
                put(Prefetched(None, None, error_line(e), (time.perf_counter() - start) * 1e3))
                break
            try:
                record = Prefetched(item, load(item), None, 0.0)
            except Exception as e:  # a bad file is a record, not the end of the batch
                record = Prefetched(item, None, error_line(e), 0.0)
            record.load_ms = (time.perf_counter() - start) * 1e3
            if not put(record):
                return
        put(_DONE)

    thread = threading.Thread(target=work, name="swinfuse-prefetch", daemon=True)
    thread.start()
    try:
        while (record := ready.get()) is not _DONE:
            yield record
    finally:
        stop.set()
        thread.join()


@dataclass
class WriteResult:
    """A finished write: tag is whatever the caller submitted with it; error a one-line reason or None."""

    tag: Any
    path: Path
    error: str | None
    write_ms: float


class AsyncWriter:
    """Write images atomically in a background thread, at most `depth` waiting at a time.

    submit() blocks while the queue is full, so a slow disk slows the batch instead of filling memory.
    Finished writes are collected with drain() on the caller's thread, so progress hooks never run on
    the writer thread. Use as a context manager: leaving it waits for pending writes.
    """

    def __init__(self, depth: int = 2, write: Callable[[Path, Any], None] = write_image_atomic):
        self._write = write
        self._pending: queue.Queue = queue.Queue(maxsize=depth)
        self._done: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="swinfuse-writer", daemon=True)
        self._thread.start()

    def _work(self):
        while (job := self._pending.get()) is not _DONE:
            tag, path, array = job
            start = time.perf_counter()
            try:
                self._write(path, array)
                error = None
            except Exception as e:
                error = error_line(e)
            self._done.put(WriteResult(tag, Path(path), error, (time.perf_counter() - start) * 1e3))

    def submit(self, path: str | Path, array: np.ndarray | Any, tag: Any = None) -> None:
        """Queue write(path, array); array is whatever the writer's `write` takes (an image by default)."""
        self._pending.put((tag, Path(path), array))

    def drain(self) -> list[WriteResult]:
        """The writes finished since the last drain, without waiting."""
        results = []
        while True:
            try:
                results.append(self._done.get_nowait())
            except queue.Empty:
                return results

    def close(self) -> list[WriteResult]:
        """Wait for every submitted write; return the ones not drained yet."""
        if self._thread.is_alive():
            self._pending.put(_DONE)
            self._thread.join()
        return self.drain()

    def __enter__(self) -> "AsyncWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
