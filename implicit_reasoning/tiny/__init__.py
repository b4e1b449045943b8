"""The tiny offline tokenizer and causal LM that the package builds itself (for the demo, benchmarks and tests)."""
