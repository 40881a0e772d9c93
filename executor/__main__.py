"""``python -m executor``: the same as ``ancho-executor``."""

from .main import main

main()
