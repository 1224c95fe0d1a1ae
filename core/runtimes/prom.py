"""vLLM's Prometheus ``/metrics``: parsing, and a poller that turns it into a batch trace.

Every ``period_s`` (0.5 s) the poller reads the running / waiting request gauges, KV-cache
usage, the preemption and generation-token counters, stamps them on the run clock and hands a
:class:`~mle_tui.core.runtimes.base.BatchSample` to its listener. When the GPU is simulated it
also drives it: utilisation = running / max_num_seqs.

A poll asks only for the series it uses: the Prometheus exposition's ``name[]`` filter
(prometheus_client's ASGI app honours it). vLLM serves that app under ``/metrics/`` (with the
slash); its plain ``/metrics`` route returns every series, ~62 KB of text on vLLM 0.32 against
~1.8 KB filtered. A server that does not honour the filter (an error status, or the series
missing) is polled at the plain URL from then on.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence

import httpx
import msgspec
from prometheus_client.parser import text_string_to_metric_families

from ..clock import Clock
from .base import BatchSample, GpuLoad

#: Metric family name (as the parser reports it: counters lose ``_total``) -> snapshot field.
VLLM_METRICS: dict[str, str] = {
    "vllm:num_requests_running": "running",
    "vllm:num_requests_waiting": "waiting",
    "vllm:kv_cache_usage_perc": "kv_cache_usage",
    "vllm:gpu_cache_usage_perc": "kv_cache_usage",  # name before vLLM 0.10
    "vllm:num_preemptions": "preemptions_total",
    "vllm:generation_tokens": "generation_tokens_total",
    "vllm:prompt_tokens": "prompt_tokens_total",
    "vllm:request_success": "request_success_total",
}


#: Histogram family -> snapshot field prefix (its ``_sum`` and ``_count`` series are read).
VLLM_HISTOGRAMS: dict[str, str] = {"vllm:inter_token_latency_seconds": "itl"}

#: Sample names asked for with ``name[]`` (what :data:`VLLM_METRICS` and
#: :data:`VLLM_HISTOGRAMS` read).
SAMPLE_NAMES: tuple[str, ...] = (
    "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc", "vllm:num_preemptions_total", "vllm:generation_tokens_total",
    "vllm:prompt_tokens_total", "vllm:request_success_total",
    "vllm:inter_token_latency_seconds_sum", "vllm:inter_token_latency_seconds_count",
)


def filtered_url(url: str, names: Sequence[str] = SAMPLE_NAMES) -> str:
    """``url`` (a ``.../metrics`` endpoint) with a ``name[]`` filter for ``names``, on the path
    with a trailing slash (where vLLM mounts prometheus_client's app)."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    query = urllib.parse.urlencode([("name[]", n) for n in names])
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, query, ""))


class MetricsSnapshot(msgspec.Struct, kw_only=True):
    """One scrape of ``/metrics``, each value summed over engines / label sets; None if absent."""

    running: float | None = None
    waiting: float | None = None
    kv_cache_usage: float | None = None
    preemptions_total: float | None = None
    generation_tokens_total: float | None = None
    prompt_tokens_total: float | None = None
    request_success_total: float | None = None
    #: Inter-token-latency histogram (engine-stamped gaps): sum, s, and count.
    itl_sum_s: float | None = None
    itl_count: float | None = None


def _family_key(name: str) -> str:
    # prometheus_client strips `_total` from counter families; untyped ones keep it.
    return name[: -len("_total")] if name.endswith("_total") else name


def parse_metrics(text: str) -> MetricsSnapshot:
    """Parse Prometheus exposition text from a vLLM server into a :class:`MetricsSnapshot`.

    Counter samples are the ``_total`` series (``_created`` is skipped); gauges are taken as is;
    a value present for several engines / label sets is summed. ``kv_cache_usage`` is averaged
    over engines instead (it is a fraction).
    """
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        hist = VLLM_HISTOGRAMS.get(family.name) if family.type == "histogram" else None
        if hist is not None:
            fields = {f"{family.name}_sum": f"{hist}_sum_s", f"{family.name}_count": f"{hist}_count"}
            for sample in family.samples:
                if sample.name in fields:
                    key = fields[sample.name]
                    sums[key] = sums.get(key, 0.0) + float(sample.value)
            continue
        field = VLLM_METRICS.get(_family_key(family.name))
        if field is None:
            continue
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            if family.type == "counter" and not sample.name.endswith("_total"):
                continue
            sums[field] = sums.get(field, 0.0) + float(sample.value)
            counts[field] = counts.get(field, 0) + 1
    if "kv_cache_usage" in sums:
        sums["kv_cache_usage"] /= counts["kv_cache_usage"]
    return MetricsSnapshot(**sums)


class PromPoller:
    """Polls ``url`` every ``period_s`` from its own thread (so a busy load generator cannot
    delay the trace), with its own HTTP client.

    Each successful scrape becomes a :class:`BatchSample` stamped with ``clock.now_s()`` when
    the response arrived, appended to :attr:`samples` and passed to ``listener`` (from the
    poller thread). With ``sim_gpus`` the simulated GPUs are set to ``running / max_num_seqs``.
    Failed scrapes are counted in :attr:`errors` and otherwise ignored (the server watchdog
    decides whether the server is dead). ``filtered`` asks for :data:`SAMPLE_NAMES` only (see the
    module note); :attr:`bytes_total` / :attr:`scrapes` count what came back.
    """

    def __init__(
        self,
        url: str,
        clock: Clock,
        *,
        max_num_seqs: int,
        period_s: float = 0.5,
        listener: Callable[[BatchSample], None] | None = None,
        sim_gpus: Sequence[GpuLoad] | None = None,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = 10.0,
        filtered: bool = True,
    ) -> None:
        # identity: the filtered text is small; compressing it would only cost the server CPU
        self._client = httpx.Client(headers={"Accept-Encoding": "identity", **(headers or {})},
                                    timeout=timeout_s, transport=transport)
        self._plain_url = url
        self._url = filtered_url(url) if filtered else url
        #: True while the ``name[]``-filtered URL is in use.
        self.filtered = filtered
        self._clock = clock
        self._max_num_seqs = max(1, int(max_num_seqs))
        self._period_s = period_s
        self._listener = listener
        self._sim_gpus = list(sim_gpus or [])
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.samples: list[BatchSample] = []
        self.errors = 0
        self.last: MetricsSnapshot | None = None
        self.bytes_total = 0
        self.scrapes = 0

    def _get(self, url: str) -> MetricsSnapshot:
        resp = self._client.get(url)
        resp.raise_for_status()
        self.bytes_total += len(resp.content)
        self.scrapes += 1
        return parse_metrics(resp.text)

    def scrape(self) -> MetricsSnapshot:
        """One scrape; raises httpx errors and ValueError on unparsable text. The first filtered
        scrape that fails or lacks the running gauge switches to the plain URL for good."""
        if not self.filtered:
            return self._get(self._url)
        try:
            snap = self._get(self._url)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code >= 500:
                raise  # the server's trouble, not the filter's
            snap = None
        if snap is not None and snap.running is not None:
            return snap
        self.filtered, self._url = False, self._plain_url
        return self._get(self._url)

    def _emit(self, snap: MetricsSnapshot) -> BatchSample:
        running = snap.running or 0.0
        sample = BatchSample(
            t_s=self._clock.now_s(),
            running=running,
            waiting=snap.waiting or 0.0,
            kv_cache_usage=snap.kv_cache_usage,
            preemptions_total=snap.preemptions_total,
            generation_tokens_total=snap.generation_tokens_total,
            itl_sum_s=snap.itl_sum_s,
            itl_count=snap.itl_count,
        )
        for gpu in self._sim_gpus:
            gpu.set_load(min(1.0, running / self._max_num_seqs))
        self.samples.append(sample)
        self.last = snap
        if self._listener is not None:
            self._listener(sample)
        return sample

    def poll_once(self) -> BatchSample | None:
        """Scrape now and emit the sample; None (and ``errors`` + 1) when the scrape failed.
        Serialised with the thread's polls so samples stay in time order."""
        with self._lock:
            try:
                snap = self.scrape()
            except (httpx.HTTPError, ValueError):
                self.errors += 1
                return None
            return self._emit(snap)

    def _loop(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            self.poll_once()
            next_t += self._period_s
            now = time.monotonic()
            if next_t < now:  # fell behind (slow server): skip the missed slots
                next_t = now
            self._stop.wait(next_t - now)

    def start(self) -> None:
        """Poll every ``period_s`` from a daemon thread until :meth:`stop`."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="prom-poller", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread (waits for a scrape in progress, at most the client timeout)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        self.stop()
        self._client.close()

    def __enter__(self) -> "PromPoller":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
