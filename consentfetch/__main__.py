"""``python -m consentfetch`` is the ``consentfetch`` command."""

import sys

from .cli import main

sys.exit(main())
