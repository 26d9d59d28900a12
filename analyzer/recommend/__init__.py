"""Recommendations: index candidates from parsed statements, validated before they are proposed,
and maintenance findings from the catalog's counters. The entry point is
`analyzer.recommend.engine.recommend`."""
