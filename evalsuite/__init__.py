"""evalsuite: LLM-as-judge evaluation for post-training."""

__version__ = "0.1.0"
