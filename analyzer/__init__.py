"""Analyzer: snapshots, regression detection, clustering, recommendations."""
