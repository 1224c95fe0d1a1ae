"""Energy accounting: ML.ENERGY eq. 1 and eq. 2, power, cost, carbon, TDP estimate. CONTRACT STUB."""

from __future__ import annotations


def energy_per_request_llm(steady_energy_j: float, steady_tokens: int, mean_output_tokens: float) -> float:
    """Eq. 2: (E_steady / Tokens_steady) * mean_i(Tokens_request,i)."""
    raise NotImplementedError


def energy_per_request_diffusion(batch_energy_j: float, batch_size: int) -> float:
    """Eq. 1: E_batch / B."""
    raise NotImplementedError


def tdp_estimate_j(tdp_w: float, num_gpus: int, duration_s: float) -> float:
    raise NotImplementedError


def cost_per_1k_usd(energy_per_request_j: float, usd_per_kwh: float) -> float:
    raise NotImplementedError


def carbon_per_1k_g(energy_per_request_j: float, g_per_kwh: float) -> float:
    raise NotImplementedError
