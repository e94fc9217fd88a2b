"""DeepMind-Lab-style 3D tasks on ViZDoom: labmaze mazes rendered as Doom maps.

Submodules: ``wad`` (map files), ``mapgen`` (grid to geometry), ``engine`` and
``engine_process`` (the game in a child process or in-process), ``env`` (the Gymnasium base),
``maze``, ``navigation`` and ``lasertag`` (the tasks) and ``suites``.
"""
