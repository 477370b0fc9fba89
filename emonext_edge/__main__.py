"""``python -m emonext_edge``: see :mod:`emonext_edge.cli`."""

import sys

from .cli import main

sys.exit(main())
