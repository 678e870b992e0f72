"""`python -m training`: the training pipeline's commands (train, ensemble, report, ...). add-item spans training
and export, so it is a command of the project's CLI (`scorer add-item`, cli/add_item.py), not of this package."""

import sys

from training.cli import main

sys.exit(main())
