"""The scoring service: resident ONNX trunk, LRU cache of per-item heads, FastAPI endpoints."""
