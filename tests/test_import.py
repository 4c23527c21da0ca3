"""Importing videos from outside the simulator: known sprite positions survive the import, bad
videos are skipped and named, a killed import resumes, a Minari export comes back byte for
byte, and every model family trains, evaluates and is poked on imported videos."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import partial
from pathlib import Path

import h5py
import imageio_ffmpeg
import numpy as np
import pytest
from helpers.train_settings import quick_settings
from PIL import Image

from latentplay.rollouts import EpisodeReader
from latentplay.rollouts.importing import ImportSpec, import_dataset
from latentplay.rollouts.sources import FrameTransform
from latentplay.rollouts.video import write_video

ROOT = Path(__file__).resolve().parents[1]
W, H, SIDE, T = 80, 64, 12, 16  # source frames 80x64, a 12 px sprite, 16 frames per video
BG, SPRITE = (30, 40, 50), (250, 200, 40)


def sprite_xy(video: int, t: int) -> tuple[int, int]:
    """Top-left corner of the sprite in source pixels: it moves right and down."""
    return 10 + 2 * t + 3 * video, 12 + t + 2 * video


def sprite_video(video: int, frames: int = T, w: int = W, h: int = H) -> np.ndarray:
    out = np.empty((frames, h, w, 3), np.uint8)
    out[...] = BG
    for t in range(frames):
        x, y = sprite_xy(video, t)
        out[t, y : y + SIDE, x : x + SIDE] = SPRITE
    return out


def write_png_folder(folder: Path, frames: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for t, f in enumerate(frames):  # f2.png must come before f10.png
        Image.fromarray(f).save(folder / f"f{t}.png")


def bogus_codec_avi(path: Path) -> None:
    """A valid AVI whose video stream names a codec no decoder knows (fourcc ZZZZ)."""
    tmp = path.with_name("mjpeg.avi")
    gen = imageio_ffmpeg.write_frames(str(tmp), (W, H), codec="mjpeg", fps=10, macro_block_size=1)
    gen.send(None)
    for f in sprite_video(0, 4):
        gen.send(np.ascontiguousarray(f))
    gen.close()
    path.write_bytes(tmp.read_bytes().replace(b"MJPG", b"ZZZZ"))
    tmp.unlink()


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six mp4 sprite videos, a gif and a folder of PNG frames (80x64, 10 fps)."""
    root = tmp_path_factory.mktemp("videos")
    for v in range(6):
        write_video(sprite_video(v), root / f"clip{v}.mp4", fps=10)
    write_video(sprite_video(6), root / "more" / "anim.gif", fps=10)
    write_png_folder(root / "frames_a", sprite_video(7))
    return root


@pytest.fixture(scope="module")
def imported(videos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("imported") / "ds"
    spec = ImportSpec(str(videos), size=32, split_fractions=(0.5, 0.25, 0.25), shard_items=3)
    import_dataset(spec, out, progress=False)
    return out


def _centroid(frame: np.ndarray) -> np.ndarray:
    """Centre (x, y) of the sprite's pixels in a frame (its red channel against the
    background's), in pixel-centre coordinates."""
    wgt = np.clip(frame[..., 0].astype(float) - BG[0], 0, None)
    ys, xs = np.mgrid[: frame.shape[0], : frame.shape[1]]
    return np.array([(wgt * xs).sum(), (wgt * ys).sum()]) / wgt.sum()


def test_sprites_land_where_the_transform_puts_them(imported: Path) -> None:
    """Centre crop of 80x64 (x - 8), then 64 -> 32: a sprite centred at source pixel c sits at
    (c - crop + 0.5) / 2 - 0.5 in the imported frame, in every frame of every format."""
    reader = EpisodeReader(imported)
    names = {}
    for i in range(len(reader)):
        attrs = reader.ground_truth(i)["attrs"]
        names[attrs["source"]] = i
    assert sorted(names) == [*(f"clip{v}.mp4" for v in range(6)), "frames_a", "more/anim.gif"]
    for name, i in names.items():
        v = 7 if name == "frames_a" else 6 if name.endswith("gif") else int(name[4])
        frames = reader.frames(i)
        assert frames.shape == (T, 32, 32, 3) and frames.dtype == np.uint8
        for t in range(T):
            x, y = sprite_xy(v, t)
            centre = np.array([x - 8 + (SIDE - 1) / 2, y + (SIDE - 1) / 2])
            expected = (centre + 0.5) / 2 - 0.5
            err = np.abs(_centroid(frames[t]) - expected).max()
            assert err < 0.5, f"{name} frame {t}: sprite {err:.2f} px from where it belongs"
    reader.close()


def test_meta_states_source_transform_and_no_ground_truth(imported: Path, videos: Path) -> None:
    meta = json.loads((imported / "meta.json").read_text())
    assert meta["source"] == {"kind": "videos", "path": str(videos.resolve()), "items": 8}
    assert meta["transform"]["size"] == 32 and meta["transform"]["crop"] == "center"
    assert "central square" in meta["transform"]["description"]
    assert meta["fps"] == 10.0 and meta["complete"] and meta["episodes"] == 8
    assert meta["ground_truth_keys"] == [] and meta["skipped"] == []
    for shard in meta["shards"]:
        with h5py.File(imported / shard["file"], "r") as f:
            assert len(f["gt"]) == 0  # nothing invented
    reader = EpisodeReader(imported)
    assert reader.imported == "videos"
    assert reader.missing_ground_truth(["ee_pixel", "actions"]) == ["actions", "ee_pixel"]
    reader.close()


def test_split_is_a_hash_of_the_name_and_cut_videos_stay_in_one_split(
    videos: Path, tmp_path: Path
) -> None:
    a = tmp_path / "a"
    import_dataset(ImportSpec(str(videos), size=32, episode_frames=5), a, progress=False)
    reader = EpisodeReader(a)
    by_source: dict[str, set[str]] = {}
    lengths: dict[str, list[int]] = {}
    for i, (_, _, length, split) in enumerate(reader.episodes):
        src = reader.ground_truth(i)["attrs"]["source"]
        by_source.setdefault(src, set()).add(split)
        lengths.setdefault(src, []).append(length + 1)
    assert all(len(s) == 1 for s in by_source.values())  # no video leaks across splits
    assert all(v == [5, 5, 5] for v in lengths.values())  # 16 frames -> 3 x 5 (1 left over)
    # A file added to the folder moves no other file between splits.
    extra = tmp_path / "videos"
    extra.mkdir()
    for p in videos.iterdir():
        (extra / p.name).symlink_to(p)
    write_video(sprite_video(9), extra / "added.mp4", fps=10)
    b = tmp_path / "b"
    import_dataset(ImportSpec(str(extra), size=32, episode_frames=5), b, progress=False)
    reader_b = EpisodeReader(b)
    splits_b = {
        reader_b.ground_truth(i)["attrs"]["source"]: e[3] for i, e in enumerate(reader_b.episodes)
    }
    assert all(splits_b[src] == next(iter(s)) for src, s in by_source.items())
    reader.close()
    reader_b.close()


def test_frames_already_of_the_size_are_imported_byte_for_byte(tmp_path: Path) -> None:
    frames = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    write_png_folder(tmp_path / "src" / "ep", frames)
    import_dataset(ImportSpec(str(tmp_path / "src"), size=32), tmp_path / "ds", progress=False)
    reader = EpisodeReader(tmp_path / "ds")
    assert reader.frames(0).tobytes() == frames.tobytes()
    reader.close()


def test_bad_videos_are_skipped_and_named_and_the_rest_imported(
    videos: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("clip0.mp4", "clip1.mp4"):
        (src / name).symlink_to(videos / name)
    (src / "garbage.mp4").write_bytes(b"not a video at all" * 50)
    (src / "empty.webm").write_bytes(b"")
    bogus_codec_avi(src / "zz.avi")
    mixed = sprite_video(0, 4)
    write_png_folder(src / "mixed", mixed)
    Image.fromarray(sprite_video(0, 1, w=40, h=40)[0]).save(src / "mixed" / "f9.png")
    write_video(sprite_video(0, 1), src / "one_frame.mp4", fps=10)
    write_png_folder(src / "corrupt", sprite_video(1, 3))
    (src / "corrupt" / "f1.png").write_bytes(b"\x89PNG broken")
    (src / "loop").symlink_to(src)  # a symlink loop ends the walk, it does not hang it
    r = subprocess.run(
        [sys.executable, "scripts/import.py", f"source={src}", f"out={tmp_path / 'ds'}", "size=32"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    reasons = {
        s["item"]: s["reason"]
        for s in json.loads((tmp_path / "ds/meta.json").read_text())["skipped"]
    }
    assert set(reasons) == {
        "garbage.mp4",
        "empty.webm",
        "zz.avi",
        "mixed",
        "one_frame.mp4",
        "corrupt",
    }
    assert reasons["corrupt"] == "f1.png cannot be read as an image"
    assert "not a readable video" in reasons["garbage.mp4"]
    assert "empty file (0 bytes)" in reasons["empty.webm"]
    assert "unsupported codec (ZZZZ)" in reasons["zz.avi"]
    assert reasons["mixed"] == "frames of different sizes: f0.png is 80x64, f9.png is 40x40"
    assert "fewer than min_frames=2" in reasons["one_frame.mp4"]
    for item, reason in reasons.items():
        assert f"{item}: {reason}" in r.stdout  # listed at the end of the run
    reader = EpisodeReader(tmp_path / "ds")
    assert len(reader) == 2
    reader.close()
    assert (tmp_path / "ds" / "preview.png").is_file()


def test_a_folder_without_videos_and_an_all_bad_folder_are_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        import_dataset(ImportSpec(str(tmp_path / "nope")), tmp_path / "a", progress=False)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no videos here")
    with pytest.raises(ValueError, match=r"notes'?: no videos \(.mp4"):
        import_dataset(ImportSpec(str(tmp_path / "notes")), tmp_path / "b", progress=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match=r"no item could be imported \(x.mp4: empty file"):
        import_dataset(ImportSpec(str(tmp_path / "bad")), tmp_path / "c", progress=False)
    with pytest.raises(ValueError, match="crop='square'; expected one of"):
        ImportSpec(str(tmp_path), crop="square")
    with pytest.raises(ValueError, match="split_fractions"):
        ImportSpec(str(tmp_path), split_fractions=(0.5, 0.5, 0.5))


def test_a_killed_import_resumes_to_the_same_dataset(
    videos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from latentplay.rollouts import importing

    src = tmp_path / "src"
    src.mkdir()
    for p in sorted(videos.iterdir()):
        (src / p.name).symlink_to(p)
    (src / "broken.mp4").write_bytes(b"")  # skipped inside the first shard
    spec = ImportSpec(str(src), size=32, shard_items=3)
    import_dataset(spec, tmp_path / "straight", progress=False)
    out = tmp_path / "resumed"
    real = importing._write_shard

    def killed_after_the_first_shard(spec, reader, shard, *args):  # type: ignore[no-untyped-def]
        if shard == 1:
            raise KeyboardInterrupt  # the run is killed while it works on shard 1
        return real(spec, reader, shard, *args)

    monkeypatch.setattr(importing, "_write_shard", killed_after_the_first_shard)
    with pytest.raises(KeyboardInterrupt):
        import_dataset(spec, out, progress=False)
    monkeypatch.setattr(importing, "_write_shard", real)
    assert json.loads((out / "meta.json").read_text())["complete"] is False
    (out / "shards" / ".shard-00001.h5.tmp").write_bytes(b"partial")
    with pytest.raises(FileExistsError, match="resume=true"):
        import_dataset(spec, out, progress=False)
    with pytest.raises(ValueError, match=r"size: stored 32 vs now 16"):
        import_dataset(ImportSpec(str(src), size=16, shard_items=3), out, resume=True)
    r = import_dataset(spec, out, resume=True, progress=False)
    assert (r.shards_kept, r.shards_written) == (1, 2)
    assert [s["item"] for s in r.skipped] == ["broken.mp4"]  # kept with its shard
    assert not list((out / "shards").glob(".*.tmp"))
    a, b = EpisodeReader(tmp_path / "straight"), EpisodeReader(out)
    assert a.episodes == b.episodes and a.meta["splits"] == b.meta["splits"]
    for i in range(len(a)):
        assert a.frames(i).tobytes() == b.frames(i).tobytes()
    a.close()
    b.close()
    # Another source into the same folder is refused, naming the difference.
    with pytest.raises(ValueError, match="source: stored"):
        import_dataset(ImportSpec(str(videos), size=32, shard_items=3), out, resume=True)


def test_a_minari_export_comes_back_byte_for_byte(push_dataset: Path, tmp_path: Path) -> None:
    from latentplay.rollouts.minari_export import export_minari

    export_minari(push_dataset, "latentplay/roundtrip-v0", out_dir=tmp_path / "minari")
    minari = partial(ImportSpec, format="minari", size=32, minari_path=str(tmp_path / "minari"))
    import_dataset(minari("latentplay/roundtrip-v0"), tmp_path / "back", progress=False)
    src, back = EpisodeReader(push_dataset), EpisodeReader(tmp_path / "back")
    assert len(src) == len(back)
    assert back.meta["ground_truth_keys"] == ["actions", "rewards"]
    assert back.meta["action_space"]["shape"] == [3]
    for i in range(len(src)):
        assert back.frames(i).tobytes() == src.frames(i).tobytes()
        gt_src, gt_back = src.ground_truth(i), back.ground_truth(i)
        np.testing.assert_array_equal(gt_back["actions"], gt_src["actions"])
        np.testing.assert_array_equal(gt_back["rewards"], gt_src["rewards"])
        assert "ee_pixel" not in gt_back  # infos are not invented back into ground truth
    src.close()
    back.close()
    # Every second frame: rewards summed between the kept frames, actions dropped (no label).
    import_dataset(minari("latentplay/roundtrip-v0", every=2), tmp_path / "every2", progress=False)
    src, thin = EpisodeReader(push_dataset), EpisodeReader(tmp_path / "every2")
    assert thin.meta["ground_truth_keys"] == ["rewards"] and thin.meta["action_space"] is None
    frames, rewards = src.frames(0), src.ground_truth(0)["rewards"]
    assert thin.frames(0).tobytes() == frames[::2].tobytes()
    np.testing.assert_allclose(thin.ground_truth(0)["rewards"], rewards.reshape(-1, 2).sum(1))
    assert "actions" not in thin.ground_truth(0)
    src.close()
    thin.close()
    # Dict observations: the frames are the entry named by pixels_key; another key is refused.
    export_minari(
        push_dataset, "latentplay/dict-v0", out_dir=tmp_path / "minari", include_state_obs=True
    )
    import_dataset(minari("latentplay/dict-v0"), tmp_path / "dict", progress=False)
    back = EpisodeReader(tmp_path / "dict")
    src = EpisodeReader(push_dataset)
    assert back.frames(0).tobytes() == src.frames(0).tobytes()
    back.close()
    src.close()
    bad = minari("latentplay/dict-v0", pixels_key="rgb")
    with pytest.raises(ValueError, match=r"keys \['pixels', 'state'\]; pixels_key='rgb'"):
        import_dataset(bad, tmp_path / "x", progress=False)


def test_transform_crops_pads_and_stretches() -> None:
    frame = np.zeros((20, 40, 3), np.uint8)
    frame[:, :10] = 255  # a white band at the left
    assert FrameTransform(20, "center")(frame)[:, :].max() == 0  # the band is cropped away
    padded = FrameTransform(40, "pad")(frame)
    assert (
        padded.shape == (40, 40, 3) and padded[:10].max() == 0 and padded[10:30, :10].min() == 255
    )
    stretched = FrameTransform(20, "stretch")(frame)
    assert stretched[:, :5].min() == 255 and stretched[:, 6:].max() == 0


def test_every_model_family_trains_evaluates_and_is_poked_on_imported_videos(
    imported: Path, tmp_path: Path
) -> None:
    from latentplay.evaluation.poke.run import custom_poke
    from latentplay.evaluation.poke.run import run as poke
    from latentplay.evaluation.world_model import evaluate_checkpoint
    from latentplay.world_models.autoencoder.train import autoencoder_training
    from latentplay.world_models.glass.train import glass_training
    from latentplay.world_models.keypoints.train import KeypointSchedule, keypoints_training
    from latentplay.world_models.train import train_model
    from latentplay.world_models.yoda.train import YodaSchedule, yoda_training

    families = {
        "glass": partial(glass_training, size="xs"),
        "yoda": partial(yoda_training, size="xs", memory=3, schedule=YodaSchedule(clip_length=4)),
        "keypoints": partial(
            keypoints_training,
            num_keypoints=4,
            action_dim=2,
            clip_length=4,
            schedule=KeypointSchedule(perception_steps=1, horizon_start=2, horizon_end=3),
        ),
    }
    ae = tmp_path / "autoencoder"
    train_model(
        partial(autoencoder_training, statistics_frames=64), imported, quick_settings(), out=ae
    )
    fresh = tmp_path / "not" / "yet" / "results.json"  # folders made (runs/<shipped name>)
    ev = evaluate_checkpoint(ae / "checkpoints" / "last.pt", imported, out=fresh, device="cpu")
    assert np.isfinite(ev.results["eval/autoencoder/psnr"]) and fresh.is_file()
    assert "skipped: objects through the bottleneck: no object detector for imported" in ev.table
    families["yoda_latent"] = partial(
        families["yoda"], autoencoder=str(ae / "checkpoints" / "last.pt")
    )
    for name, build in families.items():
        run = tmp_path / name
        train_model(build, imported, quick_settings(max_steps=2), out=run)
        ckpt = run / "checkpoints" / "last.pt"
        ev = evaluate_checkpoint(ckpt, imported, max_clips=2, device="cpu")
        r = ev.results
        for key in ("eval/image/tf_psnr", "eval/image/ar8_psnr", "eval/control/delta_psnr"):
            assert np.isfinite(r[key]), f"{name}: {key} = {r[key]}"
        if name == "glass":
            assert ev.video is not None and ev.video.stat().st_size > 0  # learned actions
            assert "contact_arm_object, ee_pixel" in r["skipped"]["action identification"]
            assert "skipped: arm mask IoU:" in ev.table
        if name == "keypoints":
            assert "object_pixel" in r["skipped"]["keypoint probes"]
        p = poke(ckpt, data=imported, poke_queries=3, steps=3, image_clips=2, device="cpu")
        res = json.loads(p.results.read_text())
        assert res["eval/videos/clips"] == 3 and np.isfinite(res["eval/videos/psnr"])
        assert (
            "not PushMulti-v0 scenes" in res["skipped"]["pokes and chained pushes against MuJoCo"]
        )
        assert "eval/poke/angle_match" not in res
        assert p.videos[0].name == "poke.mp4" and p.videos[0].stat().st_size > 0
        assert p.report.is_file()
        if name == "yoda":  # a poke of one's own, from a frame of the imported videos
            own = custom_poke(ckpt, [10, 12], [1, 0], data=imported, steps=2, then=1, device="cpu")
            assert own.name == "custom_poke.mp4" and own.stat().st_size > 0


def test_what_needs_an_env_or_actions_says_so_on_imported_videos(
    imported: Path, tmp_path: Path
) -> None:
    from latentplay.agents.grounding import fit_grounding
    from latentplay.rollouts.minari_export import export_minari
    from latentplay.world_models.glass import Glass

    with pytest.raises(ValueError, match="holds imported videos, not episodes collected"):
        export_minari(imported, "latentplay/imported-v0", out_dir=tmp_path / "minari")
    model = Glass(image_size=32, size="xs")
    with pytest.raises(ValueError, match="without recorded actions: a fit grounding needs them"):
        fit_grounding(model, imported, labels=10)


def test_short_imported_episodes_get_a_clear_error_not_a_crash(
    videos: Path, tmp_path: Path
) -> None:
    from latentplay.evaluation.world_model import evaluate
    from latentplay.rollouts.dataset import ClipDataset
    from latentplay.world_models.glass import Glass

    out = tmp_path / "short"
    spec = ImportSpec(str(videos), size=32, episode_frames=4, split_fractions=(0.5, 0.25, 0.25))
    import_dataset(spec, out, progress=False)
    with pytest.raises(ValueError, match=r"is 9 frames long .*the longest has 4"):
        evaluate(Glass(image_size=32, size="xs"), out, horizon=8)
    with pytest.raises(ValueError, match="without recorded actions; with_gt=True needs"):
        ClipDataset(out, split="test", clip_length=2, with_gt=True)


def test_an_unexpected_failure_on_one_video_skips_it_not_the_import(
    videos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from latentplay.rollouts import importing

    real = importing.read_item

    def fails_on_clip3(item, transform, every=1):  # type: ignore[no-untyped-def]
        if item.name == "clip3.mp4":
            raise RuntimeError("decoder crashed")
        return real(item, transform, every)

    monkeypatch.setattr(importing, "read_item", fails_on_clip3)
    r = import_dataset(ImportSpec(str(videos), size=32), tmp_path / "ds", progress=False)
    assert r.skipped == [{"item": "clip3.mp4", "reason": "RuntimeError: decoder crashed"}]
    assert r.episodes == 7


def test_the_train_script_trains_on_imported_videos(imported: Path, tmp_path: Path) -> None:
    """The same command as for collected data (the README's "Your own videos")."""
    out = tmp_path / "kp"
    cmd = [
        sys.executable,
        "scripts/train.py",
        "model=keypoints",
        f"data={imported}",
        "model.clip_length=4",
        "model.schedule.perception_steps=1",
        "trainer.max_steps=2",
        "trainer.max_minutes=null",
        "trainer.batch_size=4",
        "trainer.progress=false",
        f"out={out}",
    ]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "checkpoints" / "last.pt").is_file() and "step 2" in r.stdout
