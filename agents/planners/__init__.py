"""CEM and MPPI over a world model's learned action space, and the costs they minimize.

Why not pytorch-mppi: it samples Gaussian noise for a fixed-size continuous action and calls a
``dynamics(state, action)`` on state tensors; GLASS's actions mix a continuous shift with a
categorical local action, and model states are opaque (dataclasses of tensors). Wrapping it
would mean encoding categories as continuous values and flattening states, more code than
the ~100 lines each planner takes here, with the sampling law hidden behind it.
"""

from latentplay.agents.planners.base import Cost, Plan, SamplingPlanner
from latentplay.agents.planners.cem import CEM
from latentplay.agents.planners.mppi import MPPI

__all__ = ["CEM", "MPPI", "Cost", "Plan", "SamplingPlanner"]
