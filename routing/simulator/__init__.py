"""The routing simulator: replays real grid traces and an arrival process through the live policies."""

from routing.simulator.runner import SimResult, format_table, simulate

__all__ = ["SimResult", "format_table", "simulate"]
