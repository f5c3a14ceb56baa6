"""Distil, quantize, prune and profile models into registered variants."""
