"""A stand-in for vLLM used by the server-mode tests (see entrypoints/openai/api_server.py)."""
