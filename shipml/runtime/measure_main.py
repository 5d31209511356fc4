"""`python -m shipml.runtime.measure_main PACKAGE RAW --out result.json`: measure a package in this process.

A module of its own (not `python -m shipml.runtime.timing`) because `shipml.runtime` imports `timing`,
and running an already imported module with -m makes runpy warn.
"""

from __future__ import annotations

import sys

from shipml.runtime.timing import main

if __name__ == "__main__":
    sys.exit(main())
