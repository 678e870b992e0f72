"""Per-item LoRA + classifier training on one frozen, shared transformer backbone."""
