"""``python -m auralink_node``: the same as the ``auralink-node`` console script."""

import sys

from auralink_node.cli import main

sys.exit(main())
