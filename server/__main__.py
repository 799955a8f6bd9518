"""`python -m server` is the `yitang` command."""

import sys

from server.cli import main

sys.exit(main())
