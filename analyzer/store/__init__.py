"""The store's SQL, one module per thing it stores.

- `connection`: a session on a migrated store (`connect_store`, the schema version, pgvector);
- `snapshots`: snapshot headers, statement texts and counters; `writer` writes snapshots as
  changed rows plus checkpoints; `partitions` (time partitions, retention) and `catalogs`
  (catalog snapshots, kept when the structure changed) belong to the same store;
- `audits`: audit runs and their results (regressions, clusters, plan shapes, the report);
- `recommendations`: recommendations (optimization_log), their status history and recall;
- `embeddings`: which embedder made each set of stored vectors, and the re-embeddings;
- `ask`: the ask knowledge (examples, schema, docs with their vectors) and the questions asked;
- `locks`: the advisory lock keys, each defined once.
"""
