"""Test helpers: a fake OpenAI-compatible chat server with deterministic answers, judges and fault injection."""
