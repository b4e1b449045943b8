"""LaTRO (RLOO-k over sampled rationales): its config and trainer."""
