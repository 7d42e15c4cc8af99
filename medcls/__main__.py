"""`python -m medcls predict ...`: the `medcls` command without installing the package."""

import sys

from medcls.cli import main

sys.exit(main())
