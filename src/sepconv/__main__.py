import sys

from sepconv.cli import main

sys.exit(main())
