"""The run screen's cluster pane (a ``--ray`` run): per node its GPUs, the configuration running
there and its live total power, which node the charts follow, and the queue across nodes.
Two lines per node, 28 columns (the progress pane of an 80-column terminal)."""

from __future__ import annotations

from rich.text import Text

from .live import PENDING, LiveState
from .live_nodes import node_rows

WIDTH = 28


def nodes_text(live: LiveState) -> Text:
    rows = node_rows(live)
    queued = sum(1 for r in live.rows.values() if r.status == PENDING)
    busy = sum(1 for r in rows if r["label"] is not None)
    text = Text()
    text.append(f"Cluster {busy}/{len(rows)} busy · {queued} queued\n", style="bold")
    for r in rows:
        mark = "▸" if r["selected"] else " "
        name = r["node"][:10]
        if r["label"] is None:
            text.append(f"{mark}{name:<10} idle\n", style="bold" if r["selected"] else "dim")
            continue
        gpus = "GPU " + ",".join(str(i) for i in r["gpus"]) if r["gpus"] else ""
        watts = f"{r['total_w']:.0f} W" if r["total_w"] is not None else "— W"
        head = f"{mark}{name:<10} {gpus[:9]:<9}"
        text.append(head, style="bold" if r["selected"] else "")
        text.append(f"{watts:>{WIDTH - len(head)}}\n", style="yellow")
        pct = f" {int(100 * r['fraction'])}%" if r["fraction"] is not None else ""
        label = f"{r['index'] + 1}/{live.total} {r['label']}"
        text.append(f"  {label[: WIDTH - 2 - len(pct)]}{pct}\n", style="" if r["selected"] else "dim")
    text.append("n: charts of the next node\n", style="dim")
    return text
