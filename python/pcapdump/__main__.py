"""``python -m pcapdump``: the console command (the agent is launched this way)."""

from .launch import main

main()
