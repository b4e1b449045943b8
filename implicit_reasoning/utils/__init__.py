"""Old import paths only: each module re-exports its new home (data, runtime, generation, scoring, evaluation, objectives) for one release."""
