"""Root pytest configuration: notebooks run in quick mode under the test command."""

import os

# nbval starts each notebook kernel with this process's environment, so setting the variable
# here shrinks every chapter's training budget even when pytest is called without the Makefile.
os.environ.setdefault("RLTEACH_QUICK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
