"""Text from files (records, logs, profiles) made safe to print to a terminal."""

from __future__ import annotations

import re

# ESC-introduced sequences (CSI ... final byte, OSC/DCS/APC/PM/SOS ... ST or BEL, two-byte
# escapes), then any C0/C1 control character left (tab and newline kept only where allowed).
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b[\]PX^_][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|[\x90\x9d\x98\x9e\x9f][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x9b[0-?]*[ -/]*[@-~]"
    r"|\x1b[ -/]*[0-~]?"
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def escape_terminal(text: str, *, keep_newlines: bool = True) -> str:
    """``text`` safe to print to a terminal: escape sequences (an OSC 52 clipboard write, a
    title change, cursor moves) removed, other control characters shown as ``?``."""
    text = _ESCAPES.sub("", str(text))
    text = _CONTROLS.sub("?", text)
    return text if keep_newlines else text.replace("\n", " ").replace("\t", " ")
