"""Energy accounting: ML.ENERGY eq. 1 and eq. 2, power, cost, carbon, TDP estimate."""

from __future__ import annotations

#: Joules per kWh.
J_PER_KWH = 3.6e6


def energy_per_request_llm(steady_energy_j: float, steady_tokens: int, mean_output_tokens: float) -> float:
    """Eq. 2: (E_steady / Tokens_steady) * mean_i(Tokens_request,i). Raises ValueError when no
    token was produced in the window."""
    if steady_tokens <= 0:
        raise ValueError("steady window produced no output tokens")
    return steady_energy_j / steady_tokens * mean_output_tokens


def energy_per_request_diffusion(batch_energy_j: float, batch_size: int) -> float:
    """Eq. 1: E_batch / B."""
    if batch_size <= 0:
        raise ValueError("batch size must be positive")
    return batch_energy_j / batch_size


def energy_per_token_j(steady_energy_j: float, steady_tokens: int) -> float:
    """Steady-window energy per output token, J."""
    if steady_tokens <= 0:
        raise ValueError("steady window produced no output tokens")
    return steady_energy_j / steady_tokens


def avg_power_w(energy_j: float, duration_s: float) -> float:
    """Average power E / T, W."""
    if duration_s <= 0:
        raise ValueError("duration must be positive")
    return energy_j / duration_s


def tdp_estimate_j(tdp_w: float, num_gpus: int, duration_s: float) -> float:
    """TDP x number of GPUs x time: the estimate the paper shows overestimates, J."""
    return tdp_w * num_gpus * duration_s


def tdp_overestimation(tdp_estimate: float, measured_j: float) -> float | None:
    """Ratio of the TDP estimate to the measured energy over the same window (None if the
    measurement is not positive)."""
    return tdp_estimate / measured_j if measured_j > 0 else None


def cost_per_1k_usd(energy_per_request_j: float, usd_per_kwh: float) -> float:
    """Electricity cost of 1,000 requests, USD."""
    return energy_per_request_j * 1000.0 / J_PER_KWH * usd_per_kwh


def carbon_per_1k_g(energy_per_request_j: float, g_per_kwh: float) -> float:
    """Operational carbon of 1,000 requests, gCO2e."""
    return energy_per_request_j * 1000.0 / J_PER_KWH * g_per_kwh
