"""One module per ``fsnas`` sub-command; each exposes ``register(subparsers)``."""
