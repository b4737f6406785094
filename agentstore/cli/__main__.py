"""``python -m agentstore.cli``."""

import sys

from agentstore.cli import main

sys.exit(main())
