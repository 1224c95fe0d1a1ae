"""Measurement: the power sampler, steady-state detection, accounting formulas, latency
statistics, the per-configuration trace and the pure analysis that turns a trace into figures."""
