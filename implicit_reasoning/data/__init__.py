"""The data: the data-set registry, where each set's rows come from, custom files, raw text, input checks, prompts."""
