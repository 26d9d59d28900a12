"""The demo and its tooling: `pgarchitect demo` (story), the embedded PostgreSQL helper, the
workload generator and the reference app. The top layer: it may import the exporter and the
analyzer; neither of them, nor the shared base, imports it (see docs/architecture.md)."""
