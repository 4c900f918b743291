import sys

from fersnet.cli import main

sys.exit(main())
