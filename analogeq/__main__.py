import sys

from analogeq.cli import main

sys.exit(main())
