"""A small stand-in for a vLLM OpenAI server, for fast tests of the client side.

Continuous batching in miniature: up to ``--max-num-seqs`` requests run; every ``FAKE_STEP_S``
seconds each running request gets one token. Serves ``/health``, ``/v1/models``, streaming
``/v1/completions`` and ``/v1/chat/completions`` (with ``include_usage`` and
``continuous_usage_stats``), and ``/metrics`` in vLLM's Prometheus format: everything at
``/metrics``, only the ``name[]``-selected series at ``/metrics/`` (as vLLM 0.32 does).
The API key is ``--api-key`` or ``VLLM_API_KEY`` (as vLLM); like vLLM the server logs its
"non-default args" (the key included when it came on the command line) and, to test masking,
the key it got from the environment.
Behaviour knobs through the environment:

* ``FAKE_MODE``: ``normal`` | ``exit_startup`` (exit 3 before ready) | ``hang`` (never ready) |
  ``silent_stall`` (ready, accepts requests, never answers; logs only GET probes) | ``die_after_s=X``
  (exit 1 X seconds after the first request)
* ``FAKE_STEP_S`` (default 0.004), ``FAKE_STARTUP_S`` (default 0.3)
* ``FAKE_EOS_AFTER``: with real weights (no ``ignore_eos``), stop after this many tokens.
* ``FAKE_BUNDLE``: send tokens in chunks of this many (a busy API server merging outputs).
* ``FAKE_NO_FILTER=1``: ``/metrics/`` answers 404 (a server without the ``name[]`` filter).
* ``FAKE_API_TOKEN_S``: an API server streaming behind its engine: every chunk written takes this
  long of one writer shared by all streams (vLLM's one API server process: its work is per
  chunk), while the engine runs ahead with the requests it holds; its metrics stay the engine's.

``--stream-interval N`` as vLLM's: a chunk every N tokens, the first token at once, the last
with the finish.

Visual chat: chat messages whose content is a list of parts are counted as vLLM does for the
served model's family (``model_type`` of ``--model``'s config.json): the model directory's chat
template is rendered (image parts as ``{"type": "image"}``) and tokenised with its
``tokenizer.json`` (no added BOS, as vLLM's chat endpoint), and each image placeholder token is
replaced by the image's tokens, counted from the decoded data URL's pixel size (LLaVA-1.5: 576;
Qwen2-VL/2.5-VL: resized to multiples of 28 within [min, max] pixels, one token per 28x28 cell);
the total is ``usage.prompt_tokens``. An unknown family or an undecodable image is answered 400.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from queue import Queue

#: Series a real vLLM exports besides the ones mle-tui reads (makes /metrics realistically big).
_PADDING = "".join(
    f"# HELP vllm:other_{i} Something else.\n# TYPE vllm:other_{i} gauge\n"
    f'vllm:other_{i}{{engine="0",model_name="fake"}} 0.0\n' for i in range(300))


def _filter(text: str, names: set[str]) -> str:
    """Keep the samples named in ``names`` (and their HELP/TYPE lines), as prometheus_client's
    restricted registry does."""
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            parts = line.split()
            fam = parts[2] if len(parts) > 2 else ""
            if any(n == fam or n.startswith(fam + "_") for n in names):
                out.append(line)
        elif line.split("{", 1)[0].split(" ", 1)[0] in names:
            out.append(line)
    return "\n".join(out) + "\n"


class Engine:
    def __init__(self, max_num_seqs: int, step_s: float) -> None:
        self.max_num_seqs = max_num_seqs
        self.step_s = step_s
        self.lock = threading.Lock()
        self.waiting: list[dict] = []
        self.running: list[dict] = []
        self.generation_tokens = 0
        #: inter-token-latency histogram (sum s, count), stamped by the engine loop as vLLM's is
        self.itl_sum_s = 0.0
        self.itl_count = 0
        self.prompt_tokens = 0
        self.success = 0
        threading.Thread(target=self.loop, daemon=True).start()

    def submit(self, max_tokens: int, eos_after: int | None) -> Queue:
        q: Queue = Queue()
        with self.lock:
            self.waiting.append({"q": q, "left": max_tokens, "eos": eos_after, "n": 0})
        return q

    def loop(self) -> None:
        last_log = time.monotonic()
        while True:
            time.sleep(self.step_s)
            with self.lock:
                while self.waiting and len(self.running) < self.max_num_seqs:
                    self.running.append(self.waiting.pop(0))
                done = []
                now = time.monotonic()
                for r in self.running:
                    if r["n"] > 0:
                        self.itl_sum_s += now - r["t"]
                        self.itl_count += 1
                    r["t"] = now
                    r["n"] += 1
                    self.generation_tokens += 1
                    r["left"] -= 1
                    finished = r["left"] <= 0 or (r["eos"] is not None and r["n"] >= r["eos"])
                    r["q"].put(("tok", "length" if r["left"] <= 0 else ("stop" if finished else None)))
                    if finished:
                        r["q"].put(("end", r["n"]))
                        done.append(r)
                        self.success += 1
                for r in done:
                    self.running.remove(r)
                busy = bool(self.running or self.waiting)
            if busy and time.monotonic() - last_log > 0.5:
                last_log = time.monotonic()
                print(f"fake engine: running={len(self.running)} waiting={len(self.waiting)}", flush=True)

    def metrics(self) -> str:
        lab = '{engine="0",model_name="fake"}'
        with self.lock:
            return "\n".join([
                "# HELP vllm:num_requests_running Number of requests in model execution batches.",
                "# TYPE vllm:num_requests_running gauge",
                f"vllm:num_requests_running{lab} {float(len(self.running))}",
                "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
                "# TYPE vllm:num_requests_waiting gauge",
                f"vllm:num_requests_waiting{lab} {float(len(self.waiting))}",
                "# HELP vllm:kv_cache_usage_perc KV-cache usage.",
                "# TYPE vllm:kv_cache_usage_perc gauge",
                f"vllm:kv_cache_usage_perc{lab} {len(self.running) / self.max_num_seqs / 2}",
                "# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.",
                "# TYPE vllm:num_preemptions_total counter",
                f"vllm:num_preemptions_total{lab} 0.0",
                f"vllm:num_preemptions_created{lab} 1.7e+09",
                "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
                "# TYPE vllm:generation_tokens_total counter",
                f"vllm:generation_tokens_total{lab} {float(self.generation_tokens)}",
                f"vllm:generation_tokens_created{lab} 1.7e+09",
                "# HELP vllm:inter_token_latency_seconds Histogram of inter-token latency in seconds.",
                "# TYPE vllm:inter_token_latency_seconds histogram",
                f'vllm:inter_token_latency_seconds_bucket{{engine="0",le="+Inf",model_name="fake"}} {float(self.itl_count)}',
                f"vllm:inter_token_latency_seconds_count{lab} {float(self.itl_count)}",
                f"vllm:inter_token_latency_seconds_sum{lab} {self.itl_sum_s}",
                f"vllm:inter_token_latency_seconds_created{lab} 1.7e+09",
                "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
                "# TYPE vllm:prompt_tokens_total counter",
                f"vllm:prompt_tokens_total{lab} {float(self.prompt_tokens)}",
                "",
            ]) + _PADDING


def _smart_resize(h: int, w: int, factor: int, lo: int, hi: int) -> tuple[int, int]:
    import math

    hb, wb = max(factor, round(h / factor) * factor), max(factor, round(w / factor) * factor)
    if hb * wb > hi:
        beta = math.sqrt(h * w / hi)
        hb, wb = max(factor, math.floor(h / beta / factor) * factor), max(factor, math.floor(w / beta / factor) * factor)
    elif hb * wb < lo:
        beta = math.sqrt(lo / (h * w))
        hb, wb = math.ceil(h * beta / factor) * factor, math.ceil(w * beta / factor) * factor
    return hb, wb


class PromptCounter:
    """Prompt tokens of a request as vLLM counts them for the model in ``model_dir``."""

    def __init__(self, model_dir: str) -> None:
        self.config: dict = {}
        self.pre: dict = {}
        self.tok = None
        for name, attr in (("config.json", "config"), ("preprocessor_config.json", "pre")):
            try:
                with open(os.path.join(model_dir, name)) as fh:
                    setattr(self, attr, json.load(fh))
            except (OSError, ValueError):
                pass
        self.template = None
        if os.path.exists(os.path.join(model_dir, "tokenizer.json")):
            from tokenizers import Tokenizer

            self.tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
            try:
                with open(os.path.join(model_dir, "tokenizer_config.json")) as fh:
                    text = json.load(fh).get("chat_template")
            except (OSError, ValueError):
                text = None
            if text:
                import jinja2
                import jinja2.ext
                import jinja2.sandbox

                env = jinja2.sandbox.ImmutableSandboxedEnvironment(
                    trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
                self.template = env.from_string(text)

    def text(self, text: str) -> int:
        if self.tok is not None:
            return len(self.tok.encode(text).ids)
        return max(len(text.split()), -(-len(text) // 4)) if text else 0

    def image(self, url: str) -> int:
        import base64
        import io

        from PIL import Image

        with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as im:
            w, h = im.size
        kind = self.config.get("model_type")
        vision = self.config.get("vision_config") or {}
        if kind == "llava":
            side = int(vision.get("image_size", 336)) // int(vision.get("patch_size", 14))
            return side * side
        if kind in ("qwen2_vl", "qwen2_5_vl"):
            f = int(vision.get("patch_size", 14)) * int(vision.get("spatial_merge_size", 2))
            hb, wb = _smart_resize(h, w, f, int(self.pre.get("min_pixels", 3136)),
                                   int(self.pre.get("max_pixels", 12845056)))
            return (hb // f) * (wb // f)
        raise ValueError(f"model type {kind!r} takes no images")

    def messages(self, messages: list) -> int:
        if self.template is not None and self.tok is not None:
            urls = [p["image_url"]["url"] for m in messages if isinstance(m.get("content"), list)
                    for p in m["content"] if p.get("type") == "image_url"]
            msgs = [{"role": m["role"], "content": m["content"] if isinstance(m.get("content"), str) else
                     [{"type": "image"} if p.get("type") == "image_url" else p for p in m["content"]]}
                    for m in messages]
            ids = self.tok.encode(self.template.render(messages=msgs, add_generation_prompt=True),
                                  add_special_tokens=False).ids
            kind = self.config.get("model_type")
            pad = self.config.get("image_token_index" if kind == "llava" else "image_token_id")
            if ids.count(pad) != len(urls):
                raise ValueError(f"{ids.count(pad)} image placeholders for {len(urls)} images")
            return len(ids) - len(urls) + sum(self.image(u) for u in urls)
        n = 0
        for m in messages:
            content = m.get("content")
            if isinstance(content, str):
                n += self.text(content)
                continue
            for part in content or []:
                if part.get("type") == "text":
                    n += self.text(part["text"])
                elif part.get("type") == "image_url":
                    n += self.image(part["image_url"]["url"])
        return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="fake")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--max-num-seqs", type=int, default=8)
    ap.add_argument("--stream-interval", type=int, default=1)
    args, _unknown = ap.parse_known_args()
    mode = os.environ.get("FAKE_MODE", "normal")
    print(f"fake vllm: argv={sys.argv[1:]}", flush=True)
    # vLLM logs its non-default arguments (older versions with the key in clear)
    print(f"(APIServer pid={os.getpid()}) INFO [api_utils.py:286] non-default args: {vars(args)}", flush=True)
    if os.environ.get("VLLM_API_KEY"):
        print(f"fake vllm: env VLLM_API_KEY={os.environ['VLLM_API_KEY']!r}", flush=True)
        if args.api_key is None:
            args.api_key = os.environ["VLLM_API_KEY"]
    bundle = max(1, int(os.environ.get("FAKE_BUNDLE", "1")), args.stream_interval)
    api_token_s = float(os.environ.get("FAKE_API_TOKEN_S", "0"))
    api_writer = threading.Lock()
    time.sleep(float(os.environ.get("FAKE_STARTUP_S", "0.3")))
    if mode == "exit_startup":
        print("fake vllm: RuntimeError: simulated startup crash", flush=True)
        sys.exit(3)
    if mode == "hang":
        while True:
            time.sleep(1)
    engine = Engine(args.max_num_seqs, float(os.environ.get("FAKE_STEP_S", "0.004")))
    counter = PromptCounter(args.model)
    eos_after = int(os.environ["FAKE_EOS_AFTER"]) if os.environ.get("FAKE_EOS_AFTER") else None
    first_request = threading.Event()
    if mode.startswith("die_after_s="):
        delay = float(mode.split("=", 1)[1])

        def die() -> None:
            first_request.wait()
            time.sleep(delay)
            print("fake vllm: dying", flush=True)
            os._exit(1)

        threading.Thread(target=die, daemon=True).start()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *a) -> None:  # noqa: ANN002
            # uvicorn's access-log format; in silent_stall only our probes are logged (a live
            # API server in front of a hung engine)
            if mode != "silent_stall" or self.command == "GET":
                print(f'INFO:     {self.client_address[0]}:{self.client_address[1]} - '
                      f'"{self.command} {self.path} HTTP/1.1" {a[1] if len(a) > 1 else ""}', flush=True)

        def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _authorised(self) -> bool:
            return args.api_key is None or self.headers.get("Authorization") == f"Bearer {args.api_key}"

        def do_GET(self) -> None:  # noqa: N802
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/health":
                self._send(200, b"")
            elif url.path == "/metrics":
                self._send(200, engine.metrics().encode(), "text/plain; version=0.0.4")
            elif url.path == "/metrics/" and os.environ.get("FAKE_NO_FILTER") != "1":
                names = set(urllib.parse.parse_qs(url.query).get("name[]", []))
                text = _filter(engine.metrics(), names) if names else engine.metrics()
                self._send(200, text.encode(), "text/plain; version=0.0.4")
            elif self.path == "/v1/models":
                if not self._authorised():
                    return self._send(401, b'{"error":"Unauthorized"}')
                self._send(200, json.dumps({"data": [{"id": args.model}]}).encode())
            else:
                self._send(404, b"{}")

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if not self._authorised():
                return self._send(401, b'{"error":"Unauthorized"}')
            chat = self.path == "/v1/chat/completions"
            if self.path not in ("/v1/completions", "/v1/chat/completions"):
                return self._send(404, b"{}")
            if body.get("max_tokens", 0) <= 0 or body.get("model") != args.model:
                return self._send(400, json.dumps({"error": {"message": "bad request"}}).encode())
            first_request.set()
            if mode == "silent_stall":
                time.sleep(3600)
            prompt = body.get("messages") if chat else body.get("prompt")
            n_prompt = len(prompt) if isinstance(prompt, list) and not chat else len(json.dumps(prompt)) // 4
            if chat and any(isinstance(m.get("content"), list) for m in prompt or []):
                try:
                    n_prompt = counter.messages(prompt)
                except Exception as exc:  # noqa: BLE001 - vLLM answers a bad image with 400
                    return self._send(400, json.dumps({"error": {"message": f"{type(exc).__name__}: {exc}"}}).encode())
            with engine.lock:
                engine.prompt_tokens += n_prompt
            q = engine.submit(int(body["max_tokens"]), None if body.get("ignore_eos") else eos_after)
            opts = body.get("stream_options") or {}
            continuous = bool(opts.get("include_usage") and opts.get("continuous_usage_stats"))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            n_sent = 0
            pending = 0
            while True:
                kind, value = q.get()
                if kind == "tok":
                    pending += 1
                    if pending < bundle and value is None and (n_sent > 0 or args.stream_interval == 1):
                        continue  # merge this token with the next ones (a stream interval sends the first at once)
                    n_sent += pending
                    text = "x" * pending
                    pending = 0
                    choice = ({"index": 0, "delta": {"content": text}, "finish_reason": value} if chat
                              else {"index": 0, "text": text, "finish_reason": value})
                    chunk = {"id": "c", "choices": [choice]}
                    if continuous:
                        chunk["usage"] = {"prompt_tokens": n_prompt, "completion_tokens": n_sent,
                                          "total_tokens": n_prompt + n_sent}
                else:
                    chunk = {"id": "c", "choices": [],
                             "usage": {"prompt_tokens": n_prompt, "completion_tokens": value,
                                       "total_tokens": n_prompt + value}}
                if api_token_s > 0 and kind == "tok":
                    with api_writer:
                        time.sleep(api_token_s)
                try:
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    if kind == "end":
                        self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except OSError:
                    return
                if kind == "end":
                    return

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 1024
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"fake vllm: listening on {args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
