"""The adaptive sweep (issue 11): stop a configuration once its answer is known
(:mod:`.stopping`), search the configuration space instead of walking the grid
(:mod:`.search`), and account for the GPU time either way (:mod:`.gputime`)."""
