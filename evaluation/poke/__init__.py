"""Does a poke do what the physics does? Sparse-flow (YODA-style) models scored against MuJoCo.

Queries are built in PushMulti-v0 from env seeds: the scripted push policy walks the arm to
just behind an object (a *poke* query), or behind an object lined up with another one (a
*chain* query: A is pushed into B). From that state S the true branch pushes straight on for
``steps`` steps. The model gets the frames up to S and, per step, a poke at the end effector's
pixel with the end effector's pixel motion of the same branch (the user's "push here, this
way"), and nothing about the objects. Object positions in its frames are read by the
:class:`~latentplay.evaluation.detector.ObjectDetector` (validated on real frames).

One concept a module: :mod:`.queries` (the queries and their true branches), :mod:`.scoring`
(the scores), :mod:`.report` (table, videos, report sections), :mod:`.run` (what
``scripts/poke.py`` calls).
"""
