"""Follow a run started elsewhere: tail its ``live.jsonl`` (core.events, one per line).

Only complete lines are decoded; a partial last line waits for the next read. A line that does
not decode is counted and skipped (the writer may be a newer version)."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from ..core.events import Event, decode_event


class LiveTail:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._offset = 0
        self._partial = b""
        self._inode: int | None = None
        self.bad_lines = 0

    def read(self, max_bytes: int = 4 << 20) -> list[Event]:
        """New complete events since the last call (at most ``max_bytes`` read per call)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return []
        if self._inode is not None and (st.st_ino != self._inode or st.st_size < self._offset):
            # Replaced or truncated: start over.
            self._offset, self._partial = 0, b""
        self._inode = st.st_ino
        if st.st_size <= self._offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read(max_bytes)
        self._offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        out: list[Event] = []
        for line in lines:
            if not line.strip():
                continue
            try:
                out.append(decode_event(line))
            except (msgspec.DecodeError, msgspec.ValidationError):
                self.bad_lines += 1
        return out

    @property
    def at_end(self) -> bool:
        try:
            return os.stat(self.path).st_size <= self._offset
        except FileNotFoundError:
            return True

