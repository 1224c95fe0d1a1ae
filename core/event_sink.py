"""Where a sweep's events go, whichever drives the sweep (the local runner or the cluster
driver): ``live.jsonl`` of the run directory (events marked live) and the listener (the app, the
headless progress). A listener that raises is counted, never fatal: a broken UI must not stop a
measurement. Thread-safe."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .events import Event, encode_event


class EventSink:
    def __init__(self, listener: Callable[[Event], None] | None = None) -> None:
        self.listener = listener
        #: Listener exceptions swallowed.
        self.listener_errors = 0
        self._lock = threading.RLock()
        self._fh: Any = None

    def open(self, path: Path) -> None:
        """Append live events to ``path`` from now on (raises OSError if it cannot be opened)."""
        with self._lock:
            self._fh = open(path, "ab")

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    def emit(self, event: Event, live: bool = True) -> None:
        with self._lock:
            if live and self._fh is not None:
                try:
                    self._fh.write(encode_event(event) + b"\n")
                    self._fh.flush()
                except (OSError, ValueError):
                    pass
            if self.listener is not None:
                try:
                    self.listener(event)
                except Exception:  # noqa: BLE001
                    self.listener_errors += 1
