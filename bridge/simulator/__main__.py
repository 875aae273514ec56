"""``python -m bridge.simulator``: the simulator without the rest of the CLI."""

import sys

from bridge.simulator.cli import main

sys.exit(main())
