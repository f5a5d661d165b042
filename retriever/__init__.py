"""Stage 1: catalogs, the bi-encoder, FAISS indexes, the batch indexing job and retrieval metrics."""
