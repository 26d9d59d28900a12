"""The reference application: a small behavior_logs API over three instrumented ORM paths."""
