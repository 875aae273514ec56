"""``python -m bridge``: the ``infoway-bridge`` command (how ``run --workers`` starts its workers)."""

import sys

from bridge.cli import main

sys.exit(main())
