"""Poke a YODA-style world model and check it against MuJoCo.

    python scripts/poke.py checkpoint=runs/yoda_multi/checkpoints/last.pt data=data/push_multi

Builds poke and chain queries in PushMulti-v0 (the arm about to push an object; an object
about to be pushed into another), pokes the model at the end effector with the end effector's
true motion, and scores where the objects go against the MuJoCo branch (see
latentplay.evaluation.poke). With ``data=`` also the object-position error after 8 steps
beside copy-the-last-frame, and the image metrics (ΔPSNR). Prints a table; writes
poke_results.json, poke.mp4 and chain.mp4 (MuJoCo | model | difference) and report.html into
``out`` (default: <run folder>/poke).

On a dataset of imported videos (scripts/import.py) there is no scene to branch: the model
follows the motion it parses from the test clips with the most motion, scored against the real
frames beside copying the first one (the MuJoCo scores are skipped, saying so).

    python scripts/poke.py checkpoint=... seed=3 point=[30,40] vector=[2,0] steps=4 then=4

renders one poke of your own from the start frame of PushMulti-v0 reset with ``seed`` (with
``data=``: from the first frame of that dataset's test episode number ``seed``).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from latentplay.cli.config import plain


@hydra.main(config_path="../configs", config_name="poke", version_base="1.3")
def main(cfg: DictConfig) -> None:
    c = plain(cfg)  # typed at parse time (cli/schemas.py)
    from latentplay.evaluation.poke.run import custom_poke, run

    sampler = dict(
        sample_steps=c["sample_steps"],
        solver=c["solver"],
        reencode_every=c["reencode_every"],
        average=c["average"],
    )
    if c["point"] is not None:
        path = custom_poke(
            c["checkpoint"],
            c["point"],
            c["vector"],
            out=c["out"],
            seed=c["seed"],
            steps=c["steps"],
            then=c["then"],
            device=c["device"],
            data=c["data"],
            **sampler,
        )
        print(f"written: {path}")
        return
    r = run(
        c["checkpoint"],
        data=c["data"],
        out=c["out"],
        poke_queries=c["poke_queries"],
        chain_queries=c["chain_queries"],
        steps=c["steps"],
        seed=c["seed"],
        image_clips=c["image_clips"],
        device=c["device"],
        **sampler,
    )
    print(r.table)
    print(f"\nwritten: {r.results}, {', '.join(map(str, r.videos))}")
    print(f"report: {r.report}")


if __name__ == "__main__":
    main()
