"""Old import paths only, until the next release: each module here is its new module (in data/, runtime/, ...)."""
