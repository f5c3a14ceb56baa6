"""End-to-end optimization pipelines (digits, minilm) that register their variants."""
