"""Model registry, model cards and runtimes."""
