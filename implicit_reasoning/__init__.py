"""implicit_reasoning: Hugging Face Trainer subclasses that teach a causal LM to reason before it answers."""

__version__ = "0.2.0"
