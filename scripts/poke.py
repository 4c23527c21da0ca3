"""Poke a YODA-style world model and check it against MuJoCo.

    python scripts/poke.py checkpoint=runs/yoda_multi/checkpoints/last.pt data=data/push_multi

Builds poke and chain queries in PushMulti-v0 (the arm about to push an object; an object
about to be pushed into another), pokes the model at the end effector with the end effector's
true motion, and scores where the objects go against the MuJoCo branch (see
latentplay.evaluation.poke). With ``data=`` also the object-position error after 8 steps
beside copy-the-last-frame, and the image metrics (ΔPSNR). Prints a table; writes
poke_results.json, poke.mp4 and chain.mp4 (MuJoCo | model | difference) and report.html into
``out`` (default: <run folder>/poke).

    python scripts/poke.py checkpoint=... seed=3 point=[30,40] vector=[2,0] steps=4 then=4

renders one poke of your own from the start frame of PushMulti-v0 reset with ``seed``.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from latentplay.utils.config import require_complete


@hydra.main(config_path="../configs", config_name="poke", version_base="1.3")
def main(cfg: DictConfig) -> None:
    require_complete(cfg)
    import numpy as np
    import torch

    from latentplay.utils.io import provenance, write_json_atomic
    from latentplay.world_models.checkpoint import load_model
    from latentplay.world_models.train import resolve_device

    device = resolve_device(cfg.device)
    model, ckpt = load_model(cfg.checkpoint, device, average=bool(cfg.average))
    if not hasattr(model, "poke"):
        raise ValueError(
            f"{cfg.checkpoint}: a {ckpt['model_name']} model cannot be poked; "
            "expected a sparse-flow model (model=yoda)"
        )
    model.set_sampler(cfg.sample_steps, cfg.solver)
    out = Path(cfg.out) if cfg.out else Path(cfg.checkpoint).resolve().parent.parent / "poke"
    out.mkdir(parents=True, exist_ok=True)
    if cfg.point is not None:
        from latentplay.envs.arm import PushMultiEnv
        from latentplay.rollouts.video import upscale, write_video

        if cfg.vector is None or len(cfg.point) != 2 or len(cfg.vector) != 2:
            raise ValueError(
                f"point={cfg.point}, vector={cfg.vector}; expected [x, y] pixels "
                "and [dx, dy] pixels per step"
            )
        env = PushMultiEnv(width=model.image_size, height=model.image_size, time_limit=None)
        env.reset(seed=int(cfg.seed))
        frame = torch.from_numpy(env.render_rgb()).permute(2, 0, 1)[None, None]
        env.close()
        model.generator = torch.Generator(device=device).manual_seed(int(cfg.seed))
        pred = model.poke(
            frame.to(device),
            torch.tensor([[list(cfg.point)]]),
            torch.tensor([[list(cfg.vector)]]),
            steps=cfg.steps,
            then=cfg.then,
        )
        seq = torch.cat([frame[0].float().div(255).to(device), pred[0]])
        arr = (seq.clamp(0, 1) * 255).byte().permute(0, 2, 3, 1).cpu().numpy()
        path = write_video(upscale(arr, 4), out / "custom_poke.mp4", fps=4)
        print(f"written: {path}")
        return
    from latentplay.evaluation import poke as P
    from latentplay.evaluation.report import ReportSection, write_report

    results, queries, pred = P.evaluate_pokes(
        model, cfg.data, cfg.poke_queries, cfg.chain_queries, cfg.steps, device, cfg.seed
    )
    if cfg.data is not None and cfg.image_clips:
        from latentplay.evaluation.world_model import image_metrics
        from latentplay.rollouts.format import EpisodeReader

        reader = EpisodeReader(cfg.data)
        from latentplay.world_models.checkpoint import check_frames_fit

        check_frames_fit(model, reader.meta, cfg.data)
        img = image_metrics(model, reader, reader.indices("test"), 8, device, clips=cfg.image_clips)
        reader.close()
        results.update({k: v for k, v in img.items() if k != "per_step"})
    results.update(checkpoint=str(cfg.checkpoint), step=ckpt["step"], **provenance())
    write_json_atomic(out / "poke_results.json", results)
    videos = []
    for kind in ("poke", "chain"):
        idx = [i for i, q in enumerate(queries) if q.kind == kind]
        if idx:
            i = next((j for j in idx if results["rows"][j].get("pushed_moved")), idx[0])
            videos.append(P.poke_video(queries[i], pred[i], out / f"{kind}.mp4"))
    table = P.summary_table(results)
    rows = [
        {"metric": k, "value": v}
        for k, v in results.items()
        if k.startswith("eval/") and np.isscalar(v)
    ]
    report = write_report(
        out,
        title=f"Pokes against MuJoCo: {cfg.checkpoint}",
        summary_rows=rows,
        sections=[
            ReportSection(
                "A poke and a chained push",
                "Left: MuJoCo pushing the end effector on; middle: the model poked at the end "
                "effector with the same motion (arrows); right: their difference.",
                videos=videos,
            )
        ],
    )
    print(table)
    print(f"\nwritten: {out / 'poke_results.json'}, {', '.join(map(str, videos))}")
    print(f"report: {report}")


if __name__ == "__main__":
    main()
