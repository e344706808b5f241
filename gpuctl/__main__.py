"""`python -m gpuctl`: the same entry point as the console script."""

from gpuctl.cli.main import run

if __name__ == "__main__":
    run()
