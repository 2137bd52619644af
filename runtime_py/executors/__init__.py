"""Model executors: one module per architecture family, numpy code over a backend's linears."""
