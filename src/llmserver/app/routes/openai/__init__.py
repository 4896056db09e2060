"""The OpenAI-compatible API: protocol (msgspec structs), serving (translation), routes."""
