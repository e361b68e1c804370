"""Scaling a run: strategy and precision resolution, parallelizing a model (FSDP2, compile, activation
checkpointing), and crash-safe sharded checkpoints."""
