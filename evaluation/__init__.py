"""Evaluation against the ground truth the models never saw: metrics (:mod:`.metrics`), the
object and paddle detector (:mod:`.detector`), world-model evaluation (:mod:`.world_model`,
:mod:`.action_video`), the planning benchmark (:mod:`.planning`), pokes (:mod:`.poke`) and
counterfactual queries (:mod:`.counterfactual`) against MuJoCo, and reports (:mod:`.report`)."""
