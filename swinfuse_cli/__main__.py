from swinfuse.cli import run

run()
