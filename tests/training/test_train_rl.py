"""`t2s train rl`: tianshou PPO through make_vec and the numeric wrappers; the `rl:` agent.

The task here is small enough to learn within seconds: 64 px images with a red and a blue
square on grey noise, and the question "where is the red/blue square?". A policy must
read the question and find the square; a random box rarely overlaps it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from t2s_env import progress
from t2s_env.errors import CheckpointError, ConfigError
from t2s_env.wrappers import RandomDihedral, RewardShaping, generalized_iou
from tests.datagen import write_sample

try:
    from think2seg.agents.rl import RLPolicyAgent
    from think2seg.agents.rl.policy import action_from_mean, file_sha256, load_policy, make_actor
    from think2seg.agents.rl.advantages import leave_one_out_advantages, observation_groups
    from think2seg.agents.rl.venv import TianshouVectorEnv
    from think2seg.scripts import train_rl as tr
except ImportError:  # pragma: no cover
    pytest.skip("tianshou (extra 'rl') is not installed", allow_module_level=True)

CONFIG = "scripts/configs/rl_ppo_synthetic.yaml"


def write_squares(root, split: str, n: int, seed: int, size: int = 64) -> None:
    rng = np.random.default_rng(seed)
    colors = {"red": (220, 40, 40), "blue": (40, 60, 220)}
    for k in range(n):
        image = rng.integers(90, 140, (size, size, 3)).astype(np.uint8)
        masks = {}
        for name, color in colors.items():  # blue is drawn last, over red
            s = int(rng.integers(size // 6, size // 3))
            x, y = (int(v) for v in rng.integers(0, size - s, 2))
            m = np.zeros((size, size), bool)
            m[y:y + s, x:x + s] = True
            image[m] = color
            masks[name] = m
        target = ("red", "blue")[k % 2]
        mask = masks["red"] & ~masks["blue"] if target == "red" else masks["blue"]
        write_sample(root, split, f"{split}{k:03d}", image, mask, [f"where is the {target} square?"])


@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    root = tmp_path_factory.mktemp("squares")
    write_squares(root, "train", 64, seed=0)
    write_squares(root, "val", 32, seed=1)
    return root


def square_args(root, out, **extra) -> list[str]:
    args = {"dataset": "earthreason", "root": str(root), "frame_size": 64, "obs_size": 32, "steps_per_update": 256,
            "batch_size": 64, "total_env_steps": 2048, "eval_every": 4, "checkpoint_every": 4, "seed": 0,
            "output_dir": str(out), **extra}
    return ["--config", CONFIG, *[f"{k}={v}" for k, v in args.items()]]


@pytest.fixture(scope="module")
def trained(squares, tmp_path_factory):
    out = tmp_path_factory.mktemp("rl_run")
    # the recipe (groups of 4 answers per image, reward shaping, constant lr) for 16 updates;
    # test_linear_lr_schedule_continues_on_resume covers the lr decay
    argv = square_args(squares, out, lr_schedule="constant", total_env_steps=4096, eval_every=8)
    cfg = tr.load_config(argv)
    summary = tr.train(cfg, argv)
    return cfg, out, summary


# -- config -----------------------------------------------------------------------------------


def test_recipe_loads_and_bad_keys_or_values_are_one_line_errors(tmp_path):
    cfg = tr.load_config(["--config", CONFIG, f"output_dir={tmp_path}"])
    assert cfg.segmenter == "box" and cfg.total_env_steps > 0 and cfg.vectorization_mode == "sync"
    for bad, match in [
        (["lr=abc"], "--lr: invalid float value: 'abc'"),
        (["total_env_steps=-5"], "total_env_steps must be >= 1"),
        (["learning_rate=0.1"], "unknown key 'learning_rate'"),
        (["vectorization_mode=threads"], "vectorization_mode must be one of sync, async"),
        (["steps_per_update=100", "num_envs=8"], "multiple of num_envs"),
        (["obs_size=512"], "obs_size must be in"),
        (["giou_shaping=-1"], "giou_shaping must be"),
        (["hit_shaping=-0.5"], "hit_shaping must be"),
        (["cover_shaping=nan"], "cover_shaping must be"),
        (["hit_radius=0"], "hit_radius must be a finite number > 0"),
        (["num_envs=16", "group_size=3"], "num_envs \\(16\\) must be a multiple of group_size \\(3\\)"),
        (["group_size=0"], "group_size must be >= 1"),
    ]:
        with pytest.raises(ConfigError, match=match) as err:
            tr.load_config(["--config", CONFIG, f"output_dir={tmp_path}", *bad])
        assert "\n" not in str(err.value)
    assert not any(tmp_path.iterdir())  # nothing written before the config is known good


def test_cli_reports_config_error_in_one_line(tmp_path, capsys):
    from t2s_env.cli import main

    rc = main(["train", "rl", "--config", CONFIG, "num_envs=0", f"output_dir={tmp_path / 'x'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == ["t2s: error: num_envs must be >= 1, got 0"]
    assert not (tmp_path / "x").exists()


# -- learning -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_seeded_training_beats_a_random_policy(trained):
    """4,096 env steps (16 PPO updates of the default recipe: 16 envs in groups of 4, so 64
    distinct images per update; 23 s of training on 2 cores under a load of 2) on the
    squares task, seed 0.

    Measured: random Box actions score a mean val reward of 2.091 (20 draws over the 32 val
    images; the draw means have a std of 0.027); the untrained policy (the middle cell's
    box) 2.099 (val gIoU 4.9); the trained policy 2.565 (val gIoU 28.2; after 2,048 steps
    2.289). The test asks for more than the random mean + 6
    std (≈ 2.25) and more than the untrained policy + 0.08, so neither noise nor the initial
    box can pass it; training must move the boxes.
    """
    cfg, out, summary = trained
    val = tr.make_evaluator(cfg)
    draws = [val.evaluate_random(seed=s, repeats=1)["reward"] for s in range(20)]
    random_mean, random_std = float(np.mean(draws)), float(np.std(draws))
    val.close()
    print(f"\nrandom policy: mean val reward {random_mean:.4f} (std of 20 draw means {random_std:.4f}); "
          f"trained: {summary['val_reward']:.4f}, val gIoU {summary['val_giou']:.2f}")
    assert random_std < 0.05
    assert summary["env_steps"] == 4096 and summary["updates"] == 16
    # TensorBoard has the curves the docs plot
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/episode_reward", "train/iou", "train/reward_json", "train/reward_think", "loss/actor",
            "loss/critic", "val/giou", "val/reward"} <= tags
    assert [e.step for e in acc.Scalars("val/giou")] == [0, 2048, 4096]
    assert "baseline/center-box:0.5" in tags
    untrained = acc.Scalars("val/reward")[0].value
    print(f"untrained policy: mean val reward {untrained:.4f}, val gIoU {acc.Scalars('val/giou')[0].value:.2f}")
    assert summary["val_reward"] > random_mean + 6 * max(random_std, 0.01), (summary, random_mean, random_std)
    assert summary["val_reward"] > untrained + 0.08, (summary, untrained)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["total_env_steps"] == 4096 and "tianshou" in saved["provenance"]["packages"]


@pytest.mark.slow
def test_policy_file_reproduces_the_trained_actions_exactly(trained):
    cfg, out, summary = trained
    policy = out / "policy.pt"
    assert summary["sha256"] == file_sha256(policy)
    ckpt = torch.load(out / "checkpoints" / "step_4096.pt", map_location="cpu", weights_only=False)
    reference = make_actor(cfg.policy_spec())
    reference.load_state_dict({k[len("policy.actor."):]: v for k, v in ckpt["algorithm"].items()
                               if k.startswith("policy.actor.")})
    val = tr.make_evaluator(cfg)
    loaded, meta = load_policy(policy)
    with torch.no_grad():
        want = reference.mean(val.obs)
        got = loaded.mean(val.obs)
    assert torch.equal(want, got) and meta["env_steps"] == 4096
    # the bench agent answers with exactly these boxes, from the raw env observation
    agent = RLPolicyAgent(str(policy))
    raw = val.env.unwrapped
    obs, info = raw.reset(options={"index": 3})
    from t2s_env.wrappers import box_answer

    expected = box_answer(action_from_mean(want[3:4])[0], 64, think="rl box policy")
    assert agent.act(obs, info) == expected == agent.act(obs, info)
    val.close()


@pytest.mark.slow
def test_resume_continues_from_the_checkpoint_step(trained, capsys):
    cfg, out, _ = trained
    argv = square_args(cfg.root, out, total_env_steps=4608, resume="auto", lr_schedule="constant")
    summary = tr.train(tr.load_config(argv), argv)
    err = capsys.readouterr().err
    assert f"resuming from {out / 'checkpoints' / 'step_4096.pt'} (env step 4096, update 16)" in err
    # progress in a log (captured stderr): one line per update with env steps, rate and reward
    lines = [line for line in err.splitlines() if line.startswith("PPO: ")]
    assert [line.split(",")[0] for line in lines] == ["PPO: 4352/4608 actions (94%)", "PPO: 4608/4608 actions (100%)"]
    assert all(" actions/s" in line and "; reward " in line and ", iou " in line for line in lines), lines
    assert summary["env_steps"] == 4608 and summary["updates"] == 18  # two more updates, not 18
    assert (out / "checkpoints" / "step_4608.pt").is_file()
    with pytest.raises(ConfigError, match="no such checkpoint"):
        tr.train(tr.load_config(square_args(cfg.root, out, resume=str(out / "nope.pt"))), [])


@pytest.mark.slow
def test_linear_lr_schedule_continues_on_resume(squares, tmp_path):
    """lr × (1 − update / total updates): 2 of 2 updates, then resumed to 4 of 4."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    argv = square_args(squares, tmp_path, lr_schedule="linear", total_env_steps=512, eval_every=1)
    cfg = tr.load_config(argv)
    tr.train(cfg, argv)
    argv = square_args(squares, tmp_path, lr_schedule="linear", total_env_steps=1024, resume="auto")
    assert tr.train(tr.load_config(argv), argv)["updates"] == 4
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    lr = {e.step: e.value for e in acc.Scalars("policy/lr")}
    # (the resumed run rewrites its TensorBoard from step 512 on)
    assert lr[256] == pytest.approx(cfg.lr / 2)
    assert lr[768] == pytest.approx(cfg.lr / 4) and lr[1024] == pytest.approx(0.0, abs=1e-12)


# -- the plug-in agent ----------------------------------------------------------------------------


@pytest.mark.slow
def test_bench_runs_the_policy_and_records_its_sha256(trained, tmp_path, capsys):
    from t2s_env.cli import main

    cfg, out, summary = trained
    policy = out / "policy.pt"
    rc = main(["bench", "--dataset", "earthreason:val", "--root", str(cfg.root), "--agents", f"rl:{policy}",
               "--segmenter", "box", "--out", str(tmp_path / "res")])
    assert rc == 0, capsys.readouterr().err
    (run_yaml,) = (tmp_path / "res" / "runs").glob("*/run.yaml")
    run = yaml.safe_load(run_yaml.read_text())
    assert run["agent"]["config"]["policy_sha256"] == file_sha256(policy)
    metrics = json.loads(next((tmp_path / "res" / "runs").glob("*/metrics.json")).read_text())
    assert metrics  # scored


def test_missing_or_foreign_policy_is_a_one_line_error(tmp_path, capsys, rect_root):
    from t2s_env.cli import main

    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    for path, words in [(tmp_path / "missing" / "policy.pt", "does not exist"),
                        (foreign, "is not a Think2Seg RL policy"), (garbage, "is not a readable torch file")]:
        with pytest.raises(CheckpointError, match=words):
            load_policy(path)
        rc = main(["bench", "--dataset", "earthreason:val", "--root", str(rect_root), "--agents", f"rl:{path}",
                   "--segmenter", "box", "--out", str(tmp_path / "res")])
        lines = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("t2s: error:") and str(path) in lines[0]


def test_dihedral_augmentation_maps_actions_back():
    """The box drawn on the transformed image lands on the same pixels of the original."""
    import gymnasium as gym

    class Probe(gym.Env):
        observation_space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (4, 4, 3), np.uint8)})
        action_space = gym.spaces.Box(0, 1, (4,), np.float32)

        def reset(self, *, seed=None, options=None):
            image = np.zeros((4, 4, 3), np.uint8)
            image[0, 3] = 255  # a marked pixel at x=3, y=0
            return {"image": image}, {}

        def step(self, action):
            self.last = np.asarray(action)
            return self.reset()[0], 0.0, True, False, {}

    env = RandomDihedral(Probe())
    for seed in range(16):
        obs, _ = env.reset(seed=seed)
        y, x = (int(v) for v in np.argwhere(obs["image"][:, :, 0])[0])
        env.step(np.array([(x + 0.5) / 4, (y + 0.5) / 4, (x + 0.5) / 4, (y + 0.5) / 4], np.float32))
        assert np.allclose(env.unwrapped.last, [3.5 / 4, 0.5 / 4, 3.5 / 4, 0.5 / 4])


def test_reward_shaping_adds_the_giou_and_hit_terms_exactly():
    """On a 10×10 frame whose target is the 2×2 square at x, y in 2..3: the env's reward
    plus giou · GIoU(box, GT box) plus hit · exp(−d / radius), d the distance in frame sides
    from the box's centre pixel to the nearest target pixel, plus cover · the share of target
    pixels in the box; nothing for an empty target."""
    import gymnasium as gym

    class Probe(gym.Env):
        observation_space = gym.spaces.Box(0, 1, (1,), np.float32)
        action_space = gym.spaces.Box(0, 1, (4,), np.float32)

        def __init__(self, empty=False):
            self.mask = np.zeros((10, 10), bool)
            if not empty:
                self.mask[2:4, 2:4] = True

        def reset(self, *, seed=None, options=None):
            return np.zeros(1, np.float32), {"gt_mask": self.mask.copy()}

        def step(self, action):
            return np.zeros(1, np.float32), 0.5, True, False, {}

    env = RewardShaping(Probe(), giou=1.0, hit=2.0, hit_radius=0.25)
    _, info = env.reset()
    assert "gt_mask" not in info  # the policy's side never sees the GT
    gt = np.array([0.2, 0.2, 0.4, 0.4])
    inside = np.array([0.2, 0.2, 0.4, 0.4], np.float32)  # centre pixel (3, 3): on the target
    _, r, _, _, info = env.step(inside)
    assert info["env_reward"] == 0.5 and r == pytest.approx(0.5 + 1.0 + 2.0)
    env.reset()
    away = np.array([0.8, 0.2, 0.9, 0.4], np.float32)  # centre pixel x 8, y 3: 5 px from x = 3
    _, r, _, _, _ = env.step(away)
    assert r == pytest.approx(0.5 + generalized_iou(away.astype(np.float64), gt) + 2.0 * np.exp(-0.5 / 0.25))
    only_hit = RewardShaping(Probe(), hit=1.0, hit_radius=0.25)
    only_hit.reset()
    assert only_hit.step(away)[1] == pytest.approx(0.5 + np.exp(-0.5 / 0.25))
    cover = RewardShaping(Probe(), cover=3.0)
    cover.reset()
    assert cover.step(np.array([0.2, 0.2, 0.3, 0.4], np.float32))[1] == pytest.approx(0.5 + 3.0 * 2 / 4)  # column 2 of 2..3
    cover.reset()
    assert cover.step(away)[1] == 0.5
    empty = RewardShaping(Probe(empty=True), giou=1.0, hit=2.0, cover=1.0)
    empty.reset()
    assert empty.step(inside)[1] == 0.5


def test_leave_one_out_advantages_group_byte_equal_observations():
    obs = np.array([[1, 2], [3, 4], [1, 2], [5, 6], [3, 4], [1, 2]], np.float32)
    groups = observation_groups(obs)
    assert groups.tolist() == [0, 1, 0, 2, 1, 0]
    rewards = np.array([1.0, 2.0, 4.0, 7.0, 0.0, 1.0])
    adv = leave_one_out_advantages(rewards, groups, fallback=np.full(6, 9.0))
    # each reward minus the mean of the other answers to its observation; the lone one keeps
    # the fallback (reward − V)
    assert adv.tolist() == [1 - 2.5, 2 - 0, 4 - 1, 9, 0 - 2, 1 - 2.5]


def test_networks_run_once_per_distinct_observation_with_the_same_outputs():
    from think2seg.agents.rl.policy import PolicySpec, ValueNet, flatten_obs, unique_rows

    spec = PolicySpec(obs_size=32, arch="cell-box")
    torch.manual_seed(0)
    actor, critic = make_actor(spec), ValueNet(spec)
    rng = np.random.default_rng(0)
    distinct = flatten_obs(rng.integers(0, 255, (3, 32, 32, 3)).astype(np.uint8), rng.random((3, spec.question_dim)))
    rows = distinct[[0, 1, 0, 2, 2, 0, 1, 1]]
    assert unique_rows(torch.as_tensor(distinct))[1] is None
    seen = []
    actor.trunk.conv.register_forward_hook(lambda m, i, o: seen.append(len(i[0])))
    critic.conv.register_forward_hook(lambda m, i, o: seen.append(len(i[0])))
    with torch.no_grad():
        batched, _ = actor(rows)
        values = critic(rows)
        assert seen == [3, 3]
        single = torch.cat([actor(row[None])[0] for row in rows])
        single_values = torch.cat([critic(row[None]) for row in rows])
    assert torch.allclose(batched, single, atol=1e-5) and torch.allclose(values, single_values, atol=1e-5)
    # the gradient through the shared rows is the sum over their copies
    params = dict(actor.named_parameters())
    loss = actor(rows)[0][..., 0].logsumexp(1).sum()
    grad = torch.autograd.grad(loss, params["trunk.conv.0.weight"])[0]
    ref = sum(torch.autograd.grad(actor(row[None])[0][..., 0].logsumexp(1).sum(), params["trunk.conv.0.weight"])[0]
              for row in rows)
    assert torch.allclose(grad, ref, atol=1e-4)


def test_grouped_sub_envs_answer_the_same_images_in_lockstep(squares, tmp_path):
    import t2s_env

    cfg = tr.load_config(square_args(squares, tmp_path, group_size=4, num_envs=8, giou_shaping=1, hit_shaping=1,
                                     augment="true"))
    assert tr.reset_seeds(cfg, updates=3) == [3000, 3000, 3000, 3000, 3001, 3001, 3001, 3001]
    env_id, kwargs = cfg.env_id_and_kwargs(cfg.train_split, cfg.train_root())
    venv = TianshouVectorEnv(t2s_env.make_vec(env_id, cfg.num_envs, cfg.vectorization_mode, privileged=True,
                                                 wrappers=tr.make_wrappers(cfg, training=True), **kwargs))
    obs, _ = venv.reset(seed=tr.reset_seeds(cfg, updates=0))
    rng = np.random.default_rng(0)
    firsts = set()
    for _ in range(12):
        groups = observation_groups(obs)
        assert (groups[:4] == groups[0]).all() and (groups[4:] == groups[4]).all()
        firsts.add(obs[0].tobytes())
        obs, rew, *_ = venv.step(rng.random((8, 4)).astype(np.float32))
    assert len(firsts) > 6  # a new image (or flip) every step
    venv.close()


def test_generalized_iou():
    a = np.array([0.0, 0.0, 0.5, 0.5])
    assert generalized_iou(a, a) == pytest.approx(1.0)
    far = generalized_iou(a, np.array([0.9, 0.9, 1.0, 1.0]))
    near = generalized_iou(a, np.array([0.55, 0.55, 0.65, 0.65]))
    assert -1 <= far < near < 0


@pytest.mark.slow
def test_learning_curve_plot(trained, tmp_path, capsys):
    from think2seg.scripts.plot_learning_curve import main as plot_main

    _, out, _ = trained
    png = tmp_path / "curve.png"
    assert plot_main([str(out), "--out", str(png), "--baseline", "center-box:0.5 (bench)=4.0",
                      "--final", "rl (bench)=5.0"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_main([str(out), "--out", str(png), "--baseline", "no-value"]) == 2
    assert plot_main([str(tmp_path), "--out", str(png)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "expected NAME=NUMBER" in err[0] and "no TensorBoard events" in err[1]


# -- the coord-query / coord-mixture actors and the generated train set --------------------------


@pytest.mark.parametrize("arch", ["coord-query", "coord-mixture"])
def test_coord_actors_save_load_and_their_action_distribution(arch, tmp_path):
    from think2seg.agents.rl.policy import CellMixture, CoordQueryActor, PolicySpec, make_actor, save_policy

    spec = PolicySpec(obs_size=32, question_dim=16, channels=8, arch=arch)
    torch.manual_seed(0)
    actor = make_actor(spec, init_std=0.1)
    obs = torch.rand(5, spec.obs_dim) * 255
    assert torch.allclose(actor.log_std.exp(), torch.full((4,), 0.1))
    with torch.no_grad():
        start = actor.mean(obs)
        for p in actor.parameters():  # the zero-initialised heads must matter too
            p.add_(0.3 * torch.randn_like(p))
        moved = actor.mean(obs)
    if arch == "coord-query":  # uniform heat map at the start: the centred box of half the frame
        assert torch.allclose(start, torch.tensor([-0.5, -0.5, 0.5, 0.5]).expand(5, 4), atol=1e-5)
    assert not torch.allclose(start, moved)
    save_policy(tmp_path / "policy.pt", actor)
    loaded, _ = load_policy(tmp_path / "policy.pt")
    assert isinstance(loaded, CoordQueryActor) and loaded.spec == spec
    with torch.no_grad():
        assert torch.equal(loaded.mean(obs), moved)
        out, _ = loaded(obs)
    if arch == "coord-mixture":
        cells = (spec.obs_size // 4) ** 2
        assert out.shape == (5, cells, 1 + 2 * spec.action_dim)
        dist = CellMixture.packed(out)
        assert torch.equal(dist.mode, moved)  # the deterministic action is the best cell's box
        sample = dist.sample()
        assert sample.shape == (5, 4) and torch.isfinite(dist.log_prob(sample)).all()
        # a sample lies near one cell's box: within a few scales of it
        logits, loc, scale = out[..., 0], out[..., 1:5], out[..., 5:]
        nearest = ((sample[:, None] - loc).abs() / scale).amax(-1).amin(-1)
        assert (nearest < 6).all()
        pick = torch.distributions.Categorical(logits=logits)
        assert (dist.entropy() < pick.entropy()).all()  # narrow boxes: less than the cell entropy alone
    else:
        mu, std = out
        assert torch.equal(mu, moved) and torch.equal(std, loaded.log_std.exp().expand(5, 4))


@pytest.mark.slow
def test_coord_mixture_trains_saves_and_resumes(squares, tmp_path):
    """A PPO update through the mixture distribution (tianshou stores its packed
    parameters), then the policy file and a resumed update."""
    argv = square_args(squares, tmp_path, arch="coord-mixture", init_std=0.1, total_env_steps=256, eval_every=1)
    summary = tr.train(tr.load_config(argv), argv)
    assert summary["env_steps"] == 256 and np.isfinite(summary["val_giou"])
    loaded, meta = load_policy(tmp_path / "policy.pt")
    assert loaded.spec.arch == "coord-mixture" and meta["updates"] == 1
    argv = square_args(squares, tmp_path, arch="coord-mixture", init_std=0.1, total_env_steps=512, resume="auto")
    assert tr.train(tr.load_config(argv), argv)["updates"] == 2
    with pytest.raises(ConfigError, match="arch must be one of film-heat, coord-query, coord-mixture"):
        tr.load_config(square_args(squares, tmp_path, arch="resnet"))


def test_synthetic_train_images_are_generated_once_into_the_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("T2S_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)  # each image as if it took longer than the interval
    argv = ["--config", CONFIG, f"output_dir={tmp_path / 'run'}", "synthetic_train_images=3"]
    cfg = tr.load_config(argv)
    root = cfg.train_root()
    err = capsys.readouterr().err
    assert "generating the synthetic dataset" in err and "synthetic: 3/3 images (100%)" in err  # progress in a log
    from t2s_env import make_dataset

    assert len(make_dataset("synthetic:train", root=root)) == 3
    assert cfg.train_root() == root and "generating" not in capsys.readouterr().err  # cached
    assert tr.load_config([*argv, "synthetic_train_images=0"]).train_root() is None  # the embedded split
    assert tr.load_config([*argv, f"root={tmp_path}"]).train_root() == str(tmp_path)  # root wins
    with pytest.raises(ConfigError, match="synthetic_train_images must be in"):
        tr.load_config([*argv, "synthetic_train_images=-1"])


def test_mixture_recipe_loads(tmp_path):
    cfg = tr.load_config(["--config", "scripts/configs/rl_ppo_synthetic_mixture.yaml", f"output_dir={tmp_path}"])
    assert cfg.arch == "coord-mixture" and cfg.synthetic_train_images == 2000 and cfg.giou_shaping > 0
    assert cfg.policy_spec().arch == "coord-mixture"


# -- the cell-box actor (the default recipe's) ------------------------------------------------------


def test_cell_box_distribution_is_exact_and_matches_the_actor(tmp_path):
    from think2seg.agents.rl.policy import CellBox, CellBoxActor, PolicySpec, make_actor, save_policy

    h = w = 4
    logits = torch.full((3, h * w), -30.0)
    logits[0, 5] = logits[1, 10] = logits[2, 15] = 0.0  # each row all but certain of one cell
    log_size = torch.log(torch.full((3, 2, h * w), 0.25))
    dist = CellBox(logits, log_size, torch.full((3,), 0.1), h, w)
    torch.manual_seed(0)
    for _ in range(20):
        a = dist.sample()
        cell, ls = dist._decode(a)
        assert cell.tolist() == [5, 10, 15]  # the centre lies in the picked cell
        assert torch.allclose(ls.exp(), torch.full((3, 2), 0.25), rtol=0.6)
    # the mode: the picked cell's centre, its predicted size; in [-1, 1] units
    c = (torch.tensor([1.5, 2.5, 3.5]) / 4) * 2 - 1
    assert torch.allclose(dist.mode, torch.stack([c - 0.25, c - 0.25, c + 0.25, c + 0.25], 1), atol=1e-6)
    # exact density: log π(cell) + two Gaussian log-densities at the mean size
    expected = 2 * torch.distributions.Normal(0.0, 0.1).log_prob(torch.tensor(0.0))
    assert torch.allclose(dist.log_prob(dist.mode), expected.expand(3), atol=1e-5)
    # a box centred in another cell is all but impossible
    assert (dist.log_prob(-dist.mode) < expected - 25).all()
    assert dist.variance.shape == (3, 4) and (dist.variance > 0).all()
    # cell position + uniform offset + size: H = H(cell) + log(cell area) + 2 Gaussian entropies
    flat = CellBox(torch.zeros(1, h * w), log_size[:1], torch.full((1,), 0.1), h, w)
    gauss = torch.distributions.Normal(0.0, 0.1).entropy()
    assert torch.allclose(flat.entropy(), 2 * gauss.expand(1), atol=1e-5)

    spec = PolicySpec(obs_size=32, question_dim=16, channels=8, arch="cell-box")
    torch.manual_seed(0)
    actor = make_actor(spec, init_std=0.3)
    obs = torch.rand(5, spec.obs_dim) * 255
    with torch.no_grad():
        start = actor.mean(obs)
        # flat heat map at the start: the cell nearest the middle, a box of 15 % of the side
        assert torch.allclose(start[:, 2] - start[:, 0], torch.full((5,), 0.3), atol=1e-5)
        assert (start[:, :2] + start[:, 2:]).abs().max() / 2 < 2 / (spec.obs_size // 4) + 1e-6
        for p in actor.parameters():
            p.add_(0.3 * torch.randn_like(p))
        moved = actor.mean(obs)
        packed, _ = actor(obs)
    assert not torch.allclose(start, moved)
    assert packed.shape == (5, (spec.obs_size // 4) ** 2, 4)
    assert torch.equal(CellBox.packed(packed).mode, moved)
    save_policy(tmp_path / "policy.pt", actor)
    loaded, _ = load_policy(tmp_path / "policy.pt")
    assert isinstance(loaded, CellBoxActor) and loaded.spec == spec
    with torch.no_grad():
        assert torch.equal(loaded.mean(obs), moved)
    with pytest.raises(ValueError, match="box only"):
        make_actor(PolicySpec(arch="cell-box", n_points=1))


def test_cell_box_with_points_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="arch=cell-box answers with a box only"):
        tr.load_config(["--config", CONFIG, f"output_dir={tmp_path}", "arch=cell-box", "n_points=2"])
