"""The audit's steps, one module per stage; `analyzer.audit.workflow` wires them.

snapshot (snapshot, then applied / reverted seen) · statistics (windows, onsets) · plans ·
clusters (clustering, causes) · recommend (input, default recommender) · results (memory,
store rows).
"""
