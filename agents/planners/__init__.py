"""CEM and MPPI over a world model's learned action space, and the costs they minimize."""

from latentplay.agents.planners.base import Cost, Plan, SamplingPlanner
from latentplay.agents.planners.cem import CEM
from latentplay.agents.planners.mppi import MPPI

PLANNERS = {"cem": CEM, "mppi": MPPI}

__all__ = ["CEM", "MPPI", "PLANNERS", "Cost", "Plan", "SamplingPlanner"]
