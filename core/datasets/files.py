"""Dataset file access and error locations: resolving ``dataset.path``, reading a file's bytes
(gunzipped, size-capped), finding a file an optional package ships, and turning a decoder's
message into the line and problem of an :class:`~mle_tui.core.errors.InputError`."""

from __future__ import annotations

import gzip
import io
import re
from pathlib import Path

from ..errors import InputError

#: Dataset files (after gunzip) above this are refused; ShareGPT V3 is ~0.7 GB.
MAX_DATASET_BYTES = 4 * 2**30


def _read_bytes(path: Path, what: str, max_bytes: int = MAX_DATASET_BYTES) -> bytes:
    """A dataset file's bytes (gunzipped), refusing FIFOs, devices, directories and anything
    over ``max_bytes`` (a gzip bomb included) with one InputError."""
    from ..safe_io import read_input

    data = read_input(path, what=f"{what} file", max_bytes=max_bytes, missing=f"no such {what} file")
    if data[:2] == b"\x1f\x8b":

        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
                data = fh.read(max_bytes + 1)
        except (OSError, EOFError) as exc:
            raise InputError(str(path), "", f"corrupt gzip data ({exc})") from None
        if len(data) > max_bytes:
            raise InputError(str(path), "", f"{what} file is over {max_bytes / 2**30:.0f} GiB uncompressed")
    return data


def _resolve(path_text: str, base_dir: Path | None) -> Path:
    """A dataset path: absolute, relative to the working directory, else to ``base_dir``
    (the profile's directory)."""
    p = Path(path_text).expanduser()
    if p.is_absolute() or p.exists() or base_dir is None:
        return p
    alt = base_dir / p
    return alt if alt.exists() else p


def _packaged(package: str, parts: tuple[str, ...], extra: str) -> Path:
    from importlib import resources

    try:
        root = resources.files(package)
    except ModuleNotFoundError:
        raise InputError(
            package, "", f"package not installed; install the '{extra}' extra or set dataset.path"
        ) from None
    res = root.joinpath(*parts)
    if not res.is_file():
        raise InputError(package, "", f"packaged file {'/'.join(parts)} is missing")
    return Path(str(res))


# --------------------------------------------------------------------------- error locations


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, max(0, min(offset, len(data)))) + 1


def _byte_offset(message: str) -> int | None:
    m = re.search(r"\(byte (\d+)\)", message)
    return int(m[1]) if m else None


def _json_problem(message: str) -> str:
    """A DecodeError message as a short problem, without msgspec's byte offset."""
    if "truncated" in message:
        return "invalid JSON: ends inside a value"
    message = re.sub(r"\s*\(byte \d+\)", "", message).replace("JSON is malformed: ", "")
    return f"invalid JSON: {_problem(message)}"


def _problem(message: str) -> str:
    message = re.sub(r" - at `\$[^`]*`", "", message)
    return " ".join(message.replace("`", "").split())
