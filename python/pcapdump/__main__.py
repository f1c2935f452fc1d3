"""``python -m pcapdump``: the console command (the agent is launched this way)."""

from .cli import main

main()
