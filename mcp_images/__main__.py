"""python -m mcp_images"""

import sys

from mcp_images.cli import main

sys.exit(main())
