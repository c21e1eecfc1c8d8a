"""``python -m rnnlab`` runs the command line."""

import sys

from rnnlab.cli import main

sys.exit(main())
