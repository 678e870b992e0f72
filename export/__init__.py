"""Offline exporter: shared ONNX trunk + per-item heads (merged graphs or ORT LoRA adapters), validated."""
