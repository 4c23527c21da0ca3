"""Counterfactual "what if" queries, answered by a world model and checked against MuJoCo.

CoPhy's protocol: a start state S and env actions give the factual video A -> B; an
intervention do(C) changes the start (move, add or remove an object; change a mass or a
friction) or the actions; the ground truth D replays from the restored S with the
intervention, exact to the bit. The model predicts D from C's first frame under the factual
video's parsed latent actions (or, when the intervention changes the actions, the new env
actions mapped through grounding).

One concept a module:

- :mod:`.queries`: what a query is (:class:`~.queries.Query`, :class:`~.queries.Intervention`)
  and how query files are read;
- :mod:`.branches`: the factual and counterfactual replays of a query in MuJoCo;
- :mod:`.predict`: the model's videos of both branches;
- :mod:`.scoring`: per-query scores against the truth and the baselines, and their summary;
- :mod:`.run`: a whole suite against a checkpoint (what ``scripts/counterfactual.py`` calls);
- :mod:`.report`: its report.html, with sections from other runs.
"""
