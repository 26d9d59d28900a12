"""Shared pieces of pgarchitect: CLI, configuration, DSNs, logging, store migrations; the demo
and its tooling live in `pgarchitect.demo`."""
