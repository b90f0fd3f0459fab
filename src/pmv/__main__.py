"""`python -m pmv ...` (also what `torchrun -m pmv train ...` runs)."""

import sys

from pmv.cli.main import main

sys.exit(main())
