"""Figures a user can put in a report (matplotlib, the optional ``plots`` extra), drawn from
records offline: the time–energy Pareto front, energy per request vs batch size with the TDP
estimate, per-configuration power and batch timelines, and two runs' fronts compared.

Importing this package does not import matplotlib; :mod:`.render` and the figure modules load
it when a figure is drawn (headless: pyplot is never used).
"""

from __future__ import annotations

from .render import render_compare, render_run, report_command

__all__ = ["render_compare", "render_run", "report_command"]
