"""Language models: OpenAI-compatible streaming client, embedded llama.cpp, and the router."""
