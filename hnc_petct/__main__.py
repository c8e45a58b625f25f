"""``python -m hnc_petct`` = ``hnc-petct``."""

import sys

from hnc_petct.cli import main

sys.exit(main())
