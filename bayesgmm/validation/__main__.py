"""``python -m bayesgmm.validation``: see :func:`bayesgmm.validation.main`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
