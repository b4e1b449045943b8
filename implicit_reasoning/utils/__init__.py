"""Old import paths only, until the next release: each module here is its new module (data, runtime, generation, ...)."""
