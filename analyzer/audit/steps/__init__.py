"""The audit's steps, one module per stage; `analyzer.audit.workflow` wires them."""
