"""Log-probs of packed rows: packing, the one-forward window, the chunked LM head, head terms, scored generation."""
