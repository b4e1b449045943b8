"""The SFT baseline: its config and trainer."""
