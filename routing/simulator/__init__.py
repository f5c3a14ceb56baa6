"""The routing simulator: replays real grid traces and an arrival process through the live router's code."""

from routing.simulator.report import format_table
from routing.simulator.runner import EventResult, simulate

__all__ = ["EventResult", "format_table", "simulate"]
