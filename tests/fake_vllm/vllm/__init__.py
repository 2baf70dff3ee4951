"""A package named ``vllm`` for the worker subprocess in fast tests: re-exports tests/vllm_fake_engine.py.

Only on the worker's PYTHONPATH when a test puts it there (tests/test_backend_vllm.py); never importable from an
installed evalsuite.
"""

from vllm_fake_engine import FakeLLM as LLM
from vllm_fake_engine import FakeSamplingParams as SamplingParams

__all__ = ["LLM", "SamplingParams"]
