"""Process and model plumbing: loading any causal LM and tokenizer, the KV cache, launching, sharding, quiet logs."""
