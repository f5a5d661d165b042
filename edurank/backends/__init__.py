"""Inference backends: the same trained transformers run by torch or by ONNX Runtime (fp32 or int8), chosen
per model directory, so the service and the batch jobs pick the fastest one this CPU allows."""
