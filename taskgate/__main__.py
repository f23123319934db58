"""`python -m taskgate`: the same as the `taskgate` command (the demo starts serve this way)."""

from taskgate.cli import main

main()
