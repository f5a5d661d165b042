"""The cross-encoder second stage: a (topic, content) pair scorer, its ONNX export and agreement check."""
