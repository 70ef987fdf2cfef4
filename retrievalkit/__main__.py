"""``python -m retrievalkit ...`` (also what ``torchrun -m retrievalkit`` runs)."""

import sys

from retrievalkit.cli import main

sys.exit(main())
