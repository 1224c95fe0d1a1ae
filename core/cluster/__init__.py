"""One sweep across the GPU nodes of a Ray cluster: a node agent per node (:mod:`.agent`) runs
configurations there; the driver (:mod:`.driver`) schedules them and is the only writer of the
run directory. Ray is optional (``pip install 'mle-tui[ray]'``); nothing here is imported on
the local path."""
