"""`python -m ucloud_operator.cli`: the plugin without the installed script."""

import sys

from .commands import main

sys.exit(main())
