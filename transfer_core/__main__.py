"""``python -m transfer_core``: see :mod:`transfer_core.cli`."""

import sys

from transfer_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
