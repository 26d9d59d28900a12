"""Pure analysis: window deltas, regression tests, statement features and clustering."""
