"""The OpenAI-compatible HTTP and WebSocket front door, over the same cores as gRPC."""
