"""Stage 2: the cross-encoder reranker, its calibration, the F2-tuned decision rule and the recommend pipeline."""
