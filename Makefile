# Two commands set up a fresh machine: `make demo` and `make test` (README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export MUJOCO_GL ?= egl

.PHONY: install demo test test-all lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e ".[dev]"
	touch $(STAMP)

# The main job on the embedded default, end to end, in two parts.
# Shipped models (models/, trained here by the commands in their cards) at work: MPC on Push
# toward goal images with the ensemble of the shipped keypoint models (every candidate scored
# by each, through the state grounding shipped beside it; better plans than any one; eager
# steps: over 5 episodes compiling three models costs more than it saves; an object read within
# 4 px of its goal is left there), beside random actions
# and MuJoCo itself; the PushMulti keypoint model's and latent YODA's pushes against MuJoCo; MPC
# on Reach with GLASS (with the Push plans' smaller CEM, 100 x 5 x 5, for every controller:
# the oracle's plans at the benchmark's 300 x 5 x 10 take minutes); the counterfactual query
# suite answered by the keypoint model trained on scenes of 1-3 objects (the best shipped model
# there). Training demonstrated with a short run of each family (their figures are labelled
# as short runs): a small Push dataset with preview videos, GLASS trained on it and evaluated;
# a small PushMulti dataset, latent YODA (its frame autoencoder first) and the keypoint model
# trained on it and pushed against MuJoCo. Ends with the path of report.html (it shows all of
# the above). Running it again resumes.
SHIPPED_PLAN := keypoints_mixed
SHIPPED_ENSEMBLE := keypoints_pushmulti,keypoints_mixed1200
SHIPPED_MULTI := keypoints_pushmulti
SHIPPED_CF := keypoints_mixed
SHIPPED_GLASS := glass_push
SHIPPED_YODA := yoda_latent_pushmulti
DEMO_DATA := data/demo_push
DEMO_RUN := runs/demo_glass
DEMO_CKPT := $(DEMO_RUN)/checkpoints/last.pt
DEMO_MULTI := data/demo_multi
DEMO_AE := runs/demo_autoencoder
DEMO_YODA := runs/demo_yoda
DEMO_YODA_CKPT := $(DEMO_YODA)/checkpoints/last.pt
DEMO_KP := runs/demo_keypoints
DEMO_KP_CKPT := $(DEMO_KP)/checkpoints/last.pt
SHORT := trainer.max_minutes=1.5 resume=auto
demo: $(STAMP)
	$(PY) scripts/collect.py env=push policy=mixture episodes=60 steps=50 workers=2 masks=true out=$(DEMO_DATA) resume=true preview.episodes=16
	$(PY) scripts/plan.py checkpoint=$(SHIPPED_PLAN) env=push episodes=5 model_view=full planner.samples=100 planner.elites=10 planner.iterations=5 grounding.file=$(SHIPPED_PLAN) "ensemble=[$(SHIPPED_ENSEMBLE)]" "ensemble_groundings=[$(SHIPPED_ENSEMBLE)]" settle_px=4 imagination=eager out=runs/demo_plan_push
	$(PY) scripts/collect.py env=push_multi policy=chain episodes=60 steps=50 workers=2 out=$(DEMO_MULTI) resume=true preview.episodes=0
	$(PY) scripts/poke.py checkpoint=$(SHIPPED_MULTI) data=$(DEMO_MULTI) poke_queries=10 chain_queries=6 image_clips=16 out=runs/demo_shipped_poke
	$(PY) scripts/poke.py checkpoint=$(SHIPPED_YODA) data=$(DEMO_MULTI) poke_queries=10 chain_queries=6 image_clips=16 reencode_every=2 out=runs/demo_shipped_yoda_poke
	$(PY) scripts/train.py model=glass model.size=s data=$(DEMO_DATA) trainer.sample_every=200 $(SHORT) out=$(DEMO_RUN)
	$(PY) scripts/evaluate.py checkpoint=$(DEMO_CKPT) data=$(DEMO_DATA)
	$(PY) scripts/plan.py checkpoint=$(SHIPPED_GLASS) env=reach planner=cem episodes=5 space=state "grounding.labels=[0]" planner.samples=100 planner.elites=10 planner.iterations=5 out=runs/demo_plan_reach
	$(PY) scripts/train.py model=autoencoder data=$(DEMO_MULTI) trainer.lr=1e-3 trainer.batch_size=32 trainer.lr_schedule=cosine trainer.max_minutes=0.5 resume=auto out=$(DEMO_AE)
	$(PY) scripts/train.py model=yoda_latent model.autoencoder=$(DEMO_AE)/checkpoints/last.pt data=$(DEMO_MULTI) trainer.batch_size=32 trainer.sample_every=500 trainer.lr_schedule=cosine trainer.ema_decay=0.999 trainer.max_minutes=1 resume=auto out=$(DEMO_YODA)
	$(PY) scripts/poke.py checkpoint=$(DEMO_YODA_CKPT) data=$(DEMO_MULTI) poke_queries=10 chain_queries=6 image_clips=16 out=$(DEMO_YODA)/poke
	$(PY) scripts/train.py model=keypoints data=$(DEMO_MULTI) trainer.lr=2e-3 trainer.lr_schedule=cosine trainer.sample_every=1000 model.schedule.perception_steps=1000 $(SHORT) out=$(DEMO_KP)
	$(PY) scripts/poke.py checkpoint=$(DEMO_KP_CKPT) data=$(DEMO_MULTI) poke_queries=10 chain_queries=6 image_clips=16 out=$(DEMO_KP)/poke
	$(PY) scripts/counterfactual.py checkpoint=$(SHIPPED_CF) data=$(DEMO_MULTI) out=runs/demo_counterfactual plan_results=runs/demo_plan_push/results.json "include=[runs/demo_shipped_poke,runs/demo_shipped_yoda_poke,runs/demo_plan_reach,$(DEMO_YODA)/poke,$(DEMO_KP)/poke]"

# pytest exits 5 when it collected no test: make treats any non-zero exit as failure.
# One pytest-xdist worker per core (one torch thread each); tests that share a resource (a local
# Ray) carry the same xdist_group and run on one worker.
PYTEST := $(PY) -m pytest -q -n auto --dist loadgroup
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PYTEST) -m "not slow and not gpu"

test-all: $(STAMP)
	$(PYTEST)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: $(STAMP)
	$(PY) scripts/benchmark.py envs
	$(PY) scripts/benchmark.py collect
	$(PY) scripts/benchmark.py glass
	$(PY) scripts/benchmark.py plan
	$(PY) scripts/benchmark.py yoda

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
