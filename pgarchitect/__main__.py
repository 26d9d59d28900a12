from pgarchitect.cli import run

run()
