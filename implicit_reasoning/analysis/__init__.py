"""Analysis tools that ship with the package: CoT fragility, metric plots, the comparison report, the benchmark."""
