"""``python -m towerjax.cli``: the ``towerjax`` command."""

import sys

from towerjax.cli import main

sys.exit(main())
