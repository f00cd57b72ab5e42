"""`python -m geodns`."""

import sys

from geodns.cli import main

sys.exit(main())
