"""`python -m training`. This entry point is a program, not a module anything imports: it binds add-item
(train, then export) to export's implementation, so the training package itself never imports export."""

import sys

from export.add_item import cmd_add_item
from training.cli import main

sys.exit(main(add_item=cmd_add_item))
