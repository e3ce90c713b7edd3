"""One progress and termination mechanism for every long loop: a tqdm bar, an optional callback, and the
process-wide termination flag that SIGTERM (a panel's Cancel) sets."""
from __future__ import annotations

import threading
from typing import Callable, Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")
Callback = Callable[[int, int, str], None]  # (done, total, message)
_terminated = threading.Event()


def request_termination() -> None:
    """Mark the process as terminated (SIGTERM): every long loop stops at its next item. The signal
    handler's own KeyboardInterrupt can be lost (raised inside a finalizer, Python ignores it); this flag is not."""
    _terminated.set()


def clear_termination() -> None:
    _terminated.clear()


def check_terminated() -> None:
    """Raise KeyboardInterrupt if termination was requested."""
    if _terminated.is_set():
        raise KeyboardInterrupt


def track(items: Iterable[T], total: int, desc: str, callback: Callback | None = None,
          quiet: bool = False) -> Iterator[T]:
    """Yield `items` with a progress bar; call `callback` after each; stop (KeyboardInterrupt) before the
    next item once termination was requested."""
    with tqdm(total=total, desc=desc, disable=quiet, unit="case") as bar:
        for i, item in enumerate(items):
            check_terminated()
            yield item
            bar.update(1)
            if callback is not None:
                callback(i + 1, total, desc)
