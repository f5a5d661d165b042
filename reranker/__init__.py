"""Stage 2 (next issue): the cross-encoder reranker and its F2-tuned decision rule."""
