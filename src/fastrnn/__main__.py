"""``python -m fastrnn``: the same as the ``fastrnn`` command."""
import sys

from fastrnn.cli import main

if __name__ == "__main__":
    sys.exit(main())
