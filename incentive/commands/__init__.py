"""One module per top-level command. Each defines ``register(subparsers)`` which adds its
parser and sets ``func`` to a callable ``(args) -> int``. Modules must be cheap to import:
heavy libraries (torch, diffusers, pyomo, matplotlib) are imported inside the functions.
"""
