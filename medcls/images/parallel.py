"""Fan per-item work (decoding, cropping) out over worker processes, results in input order."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any


def _apply_chunk(function: Callable[..., Any], chunk: Sequence[tuple]) -> list:
    return [function(*args) for args in chunk]


def ordered_starmap(
    function: Callable[..., Any], arguments: Iterable[tuple], *, workers: int, chunksize: int = 16
) -> Iterator[Any]:
    """Yield `function(*args)` for each args tuple, in input order.

    With workers > 1 the work runs in "spawn" processes (forking a parent that already loaded
    TensorFlow can deadlock), and at most 2 chunks per worker are in flight, so memory stays flat
    however slowly the caller consumes results. workers <= 1 runs in-process, which keeps debuggers
    and tracebacks simple.
    """
    if workers <= 1:
        yield from itertools.starmap(function, arguments)
        return
    iterator = iter(arguments)
    chunks = iter(lambda: list(itertools.islice(iterator, chunksize)), [])
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        in_flight: deque = deque()
        for chunk in chunks:
            in_flight.append(pool.submit(_apply_chunk, function, chunk))
            if len(in_flight) > 2 * workers:
                yield from in_flight.popleft().result()
        while in_flight:
            yield from in_flight.popleft().result()
