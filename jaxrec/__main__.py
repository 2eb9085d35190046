"""`python -m jaxrec ...`: the `jaxrec` command line of this very checkout (what `jaxrec sweep` runs per point)."""

import sys

from jaxrec.cli import main

sys.exit(main())
