"""The Markovian trainer (answer from the CoT alone): its config, trainer and the VQ variant."""
