"""``python -m consentfetch`` is the ``consentfetch`` command."""

import sys

from .cli import main

# The guard matters: worker processes are spawned, and spawn re-imports the
# parent's __main__ module (as __mp_main__) in every worker.
if __name__ == "__main__":
    sys.exit(main())
