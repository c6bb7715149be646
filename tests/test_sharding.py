"""Data-parallel training over 2 forced host devices equals single-device training (pannjax/train/sharding.py).

XLA_FLAGS must be set before JAX starts, so the comparison runs in a fresh interpreter."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from pannjax.build import build_policy
    from pannjax.data import load_dataset
    from pannjax.models import build_model
    from pannjax.train import OptimizerConfig, TrainerConfig, train_and_evaluate
    from pannjax.train.state import create_train_state, make_optimizer
    from pannjax.train.steps import make_train_step
    from pannjax.train.sharding import data_mesh, replicate, shard_batch

    assert jax.device_count() == 2, jax.devices()
    data = load_dataset("digits")
    policy = build_policy({"name": "uniform", "w_bits": 4, "x_bits": 4}, {"name": "mac"})
    model = build_model("digits_cnn", num_classes=data.num_classes, policy=policy)
    tx = make_optimizer(OptimizerConfig(), 10, 10)
    batch = next(data.batches("train", 64, epoch=0, seed=0))
    state = create_train_state(model, tx, batch["image"], seed=0)
    step = make_train_step(None)

    single = jax.devices()[:1]
    s1, m1 = step(jax.device_put(state, single[0]), jax.device_put(batch, single[0]))
    mesh = data_mesh()
    s2, m2 = step(replicate(state, mesh), shard_batch(batch, mesh))
    leaves = jax.tree_util.tree_leaves
    out = {
        "loss_1": float(m1["loss"]), "loss_2": float(m2["loss"]),
        "param_diff": max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                          for a, b in zip(leaves(s1.params), leaves(s2.params))),
        "batch_devices": len(shard_batch(batch, mesh)["image"].sharding.device_set),
    }
    trainer = TrainerConfig(epochs=1, batch_size=64, checkpoint=False, progress=False)
    _, results = train_and_evaluate(model, data, trainer, 0, sys.argv[1])
    out["devices"] = results["devices"]
    out["test_accuracy"] = results["test_accuracy"]
    print(json.dumps(out))
""")


def test_one_step_on_two_devices_matches_one_device(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["batch_devices"] == 2
    assert abs(out["loss_1"] - out["loss_2"]) < 1e-5 * max(1.0, abs(out["loss_1"]))
    assert out["param_diff"] < 1e-5
    assert out["devices"] == 2
    assert out["test_accuracy"] > 0.5
