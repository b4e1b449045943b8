"""Answer checking and generation-based evaluation: the answer checkers, multiple choice, accuracy and maj@k."""
