from vllm_fake_engine import FakeLoRARequest as LoRARequest

__all__ = ["LoRARequest"]
