"""Agents: collection policies (:mod:`.policies`, SB3 training in :mod:`.train_sb3`),
planners over a model's learned actions (:mod:`.planners`), the model views they drive
(:mod:`.views`), grounding between learned and env actions (:mod:`.grounding`), the true
simulator as a model (:mod:`.simulator`) and receding-horizon control (:mod:`.mpc`)."""
