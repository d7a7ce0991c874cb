"""``python -m proofmarket.demo`` (``make demo``)."""

import sys

from proofmarket.demo.story import main

sys.exit(main())
