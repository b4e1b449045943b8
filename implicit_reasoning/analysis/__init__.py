"""Analysis tools that ship with the package: CoT fragility and metric plots."""
