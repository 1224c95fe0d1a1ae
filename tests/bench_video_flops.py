"""FLOPs of the shipped video shapes per denoising step (with classifier-free guidance) and per
VAE decode, counted on fake tensors (no memory, no GPU): the basis of the run-time estimates in
profiles/gpu/*-h200.toml. Prints figures; asserts nothing.

    PYTHONPATH=... python3 tests/bench_video_flops.py [--tflops 400]

Scaled-dot-product attention is counted as its two matmuls (torch's FLOP counter does not see
the CPU kernel). Seconds = FLOPs / the effective throughput given (default 400 TFLOP/s for bf16
on an H200: ~half the ~790 TFLOP/s a large bf16 matmul reaches there).
"""

from __future__ import annotations

import argparse
import warnings

import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from mle_tui.core.runtimes.inprocess import load_shape
from mle_tui.core.runtimes.video_pipelines import _model

_sdpa = F.scaled_dot_product_attention


def _math_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,  # noqa: ANN001, ANN202
               enable_gqa=False):
    s = (query @ key.transpose(-2, -1)) * (scale or query.shape[-1] ** -0.5)
    return s.softmax(-1) @ value


def tflop(fn) -> float:  # noqa: ANN001
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops() / 1e12


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tflops", type=float, default=400.0, help="effective TFLOP/s assumed")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    F.scaled_dot_product_attention = _math_sdpa
    rows: list[tuple[str, float]] = []
    try:
        with FakeTensorMode(allow_non_fake_inputs=True), torch.no_grad():
            s = load_shape("modelscope-t2v", "video")
            u, v = _model("unet", s["unet"]), _model("vae", s["vae"])
            for b in (1, 4):  # 16 frames of 256x256: 32x32 latents
                x, e = torch.randn(2 * b, 4, 16, 32, 32), torch.randn(2 * b, 77, 1024)
                rows.append((f"modelscope-t2v step, batch {b}", tflop(lambda: u(x, torch.tensor(500), e))))
            rows.append(("modelscope-t2v decode, 16 frames", tflop(lambda: v.decode(torch.randn(16, 4, 32, 32)))))
            s = load_shape("svd-xt", "video")
            u, v = _model("unet", s["unet"]), _model("vae", s["vae"])
            x, e, ids = torch.randn(2, 25, 8, 72, 128), torch.randn(2, 1, 1024), torch.randn(2, 3)
            rows.append(("svd-xt step, batch 1 (25 frames 1024x576)", tflop(lambda: u(x, torch.tensor(1.0), e, ids))))
            lat = torch.randn(8, 4, 72, 128)
            rows.append(("svd-xt decode, 25 frames (8 at a time)", 25 / 8 * tflop(lambda: v.decode(lat, num_frames=8))))
            s = load_shape("wan2.1-t2v-1.3b", "video")
            t = _model("transformer", s["transformer"])
            for frames in (81, 33):  # 832x480
                x, e = torch.randn(2, 16, (frames - 1) // 4 + 1, 60, 104), torch.randn(2, 512, 4096)
                rows.append((f"wan2.1-t2v-1.3b step, batch 1, {frames} frames", tflop(lambda: t(x, torch.tensor([500, 500]), e))))
    finally:
        F.scaled_dot_product_attention = _sdpa
    print(f"{'what':52s} {'TFLOP':>8s} {'s at ' + format(args.tflops, 'g') + ' TFLOP/s':>16s}")
    for name, f in rows:
        print(f"{name:52s} {f:8.1f} {f / args.tflops:16.3f}")


if __name__ == "__main__":
    main()
