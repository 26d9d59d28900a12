"""SQL text only: one module per view, variants keyed by server or extension version."""
