"""Sampling completions: the transformers backends (plain and compiled) and the colocated vLLM engine."""
