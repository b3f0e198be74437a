"""What a user runs: the ``t2i`` command, the scene world (``tools.world``), the judge (``tools.judge``),
data shards, evaluation prompts and benchmarks."""
