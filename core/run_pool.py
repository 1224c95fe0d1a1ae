"""Several run directories' records as one Pareto front (pure): a grid measured in parts, e.g.
rows of a space re-measured another way in a second directory (issue 11's H200 grid: B = 16..128
streamed a token a chunk, B = 256 and 512 eight tokens a chunk).

The parts must measure one thing: the same task and model, on one GPU model, all on real GPUs or
all simulated. A configuration measured in more than one part is taken from the last part that
has it, and the notes say which; each record keeps its own directory's settings (run.json)."""

from __future__ import annotations

import msgspec

from .errors import InputError


class PooledRecords(msgspec.Struct, kw_only=True):
    records: list
    #: One line per part (what it gave) and per configuration taken from a later part.
    notes: list[str] = []


def _gpu_models(records: list) -> set[str]:
    return {n for r in records for n in r.hardware.gpu_names}


def _what(records: list) -> tuple[str, str, bool]:
    return records[0].task, records[0].model, bool(records[0].simulated)


def pool_records(parts: list[tuple[str, list]]) -> PooledRecords:
    """``parts``: (name, records) in the order given; records are heads or whole records.
    InputError (naming the part and what differs) when the parts do not measure one thing."""
    first_name, first = next(((n, rs) for n, rs in parts if rs), (parts[0][0] if parts else "", []))
    if not first:
        return PooledRecords(records=[], notes=["no records in any of the run directories"])
    task, model, simulated = _what(first)
    gpus = _gpu_models(first)
    by_key: dict[str, tuple[str, object]] = {}
    given: list[str] = []
    replaced: list[str] = []
    for name, records in parts:
        for r in records:
            _check(name, r, first_name, task, model, simulated, gpus)
        for r in records:
            if r.config_key in by_key:
                replaced.append(f"{r.config_key}: from {name} (also in {by_key[r.config_key][0]})")
            by_key[r.config_key] = (name, r)
        given.append(f"{name}: {len(records)} records")
    return PooledRecords(records=[r for _, r in by_key.values()], notes=given + replaced)


def _check(name: str, r, first_name: str, task: str, model: str, simulated: bool, gpus: set[str]) -> None:  # noqa: ANN001
    if r.task != task:
        raise InputError(name, "records", f"{r.config_key} is a {r.task} record; {first_name} has {task}")
    if r.model != model:
        raise InputError(name, "records", f"{r.config_key} measured {r.model}; {first_name} measured {model}")
    if bool(r.simulated) != simulated:
        raise InputError(name, "records", f"{r.config_key} is {'simulated' if r.simulated else 'measured'} and "
                         f"{first_name}'s records are {'simulated' if simulated else 'measured'}")
    other = set(r.hardware.gpu_names) - gpus
    if other:
        raise InputError(name, "records", f"{r.config_key} ran on {', '.join(sorted(other))}; {first_name} on "
                         f"{', '.join(sorted(gpus))}: two GPU models would share one front")
