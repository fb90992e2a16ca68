"""`python -m watchkeeper.engine` works like the `watchkeeper` console script."""

from watchkeeper.engine.cli import main

main()
