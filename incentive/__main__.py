"""``python -m incentive`` is the ``incentive`` command."""
import sys

from incentive.cli import main

sys.exit(main())
