"""`python -m sst.cli`: the same as the `sst` console script."""

from sst.cli import main

main()
