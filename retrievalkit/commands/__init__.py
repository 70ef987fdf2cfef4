"""Sub-commands of the ``retrievalkit`` CLI, one module each (``register(subparsers)``)."""
