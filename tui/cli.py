def main():
    from mle_tui.core import __version__
    print(__version__)
