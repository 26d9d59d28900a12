"""One module per provisioned dashboard: `UID` and `build()` (the dashboard as JSON)."""
