"""Log-probs of packed rows: packing, the one-forward window, float32 log-probs, the chunked LM head, head terms."""
