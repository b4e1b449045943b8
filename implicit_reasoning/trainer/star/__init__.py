"""STaR (SFT or DPO on the model's own correct rationales): its config, trainer and data helpers."""
