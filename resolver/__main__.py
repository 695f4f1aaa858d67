import sys

from resolver.daemon.cli import main

sys.exit(main())
