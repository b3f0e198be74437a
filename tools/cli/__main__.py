"""``python -m tools.cli`` (and ``accelerate launch -m tools.cli``): the same as the ``t2i`` script."""

import sys

from tools.cli import main

sys.exit(main())
