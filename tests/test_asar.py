"""ASAR against independent computations: the relabeling targets and loss, the confidence, the gradient
embeddings, k-means, upstream's selection rule, the queue after a step on both sides of the switch, the
epoch boundary, released-checkpoint keys, the configs; and end to end on real NW-UCLA sequences."""
import os
import re

import numpy as np
import pytest
from conftest import assert_data_paths
import torch

from net.asar import (ASAR, cluster_rank_order, gradient_embeddings, key_confidence, kmeans, relabel_targets,
                      soft_cross_entropy)

SMALL = dict(hidden_channels=4, hidden_dim=8, feature_dim=6, queue_size=12, dropout=0.0,
             graph_args={"layout": "nw-ucla", "strategy": "spatial"})


# ----------------------------------------------------------------------------- independent references
def np_log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def np_relabel(k, queue, nn_num, t2):
    """Per sample: confidence from the entropy of softmax(k.queue / T2); the target row by hand."""
    n, size = k.shape[0], queue.shape[1]
    rows, conf = [], []
    for i in range(n):
        s = k[i] @ queue / t2
        p = np.exp(s - s.max())
        p /= p.sum()
        c = 1.0 - (-(p * np.log(p)).sum()) / np.log(size)
        row = np.zeros(1 + size)
        row[0] = 1.0
        for j in np.argsort(-s)[:nn_num]:
            row[1 + j] = c
        rows.append(row / (1.0 + nn_num * c))
        conf.append(c)
    return np.array(rows), np.array(conf)


def np_gradient_embeddings(q, cand):
    """Hand-derived: L = 1/N sum_i [-s_ii + log sum_j exp s_ij], s = q cand^T, so
    dL/dcand_j = 1/N sum_i (softmax(s_i)_j - [i == j]) q_i."""
    n = q.shape[0]
    p = np.exp(np_log_softmax(q @ cand.T))
    y = np.zeros_like(p)
    y[np.arange(n), np.arange(n)] = 1.0
    return (p - y).T @ q / n


def np_kmeans(x, init, max_iter=100, tol=1e-4):
    """Lloyd's iterations from the given initial rows; empty clusters move to the origin (upstream)."""
    centroids = x[init].copy()
    closest = None
    for _ in range(max_iter):
        dist = ((x[:, None, :] - centroids[None]) ** 2).sum(-1)
        closest = dist.argmin(axis=1)
        means = np.zeros_like(centroids)
        for c in range(len(centroids)):
            if (closest == c).any():
                means[c] = x[closest == c].mean(axis=0)
        if ((means - centroids) ** 2).sum() <= tol:
            break
        centroids = means
    return closest


def upstream_counter_rule(labels, bs):
    """Upstream's selection (WGQ109/ASAR net/asar.py, after the k-means) restated in plain Python:
    a counter per cluster starts at its size; walking the candidates in order, counter 1 -> bin 1,
    2 / 3 -> bin 2 / 3 and >= 4 -> bin 4, the counter dropping by one except in bin 1; then the first
    bs of bins 1+2 or 1+2+3 when they hold enough, else every candidate (upstream's length bug)."""
    counter = {}
    for v in labels:
        counter[v] = counter.get(v, 0) + 1
    bins = {1: [], 2: [], 3: [], 4: []}
    for j, v in enumerate(labels):
        c = counter[v]
        bins[min(c, 4)].append(j)
        if c > 1:
            counter[v] = c - 1
    b1, b2, b3, b4 = bins[1], bins[2], bins[3], bins[4]
    if len(b1) >= bs:
        return b1
    if len(b1) + len(b2) >= bs:
        return (b1 + b2)[:bs]
    if len(b1) + len(b2) + len(b3) >= bs:
        return (b1 + b2 + b3)[:bs]
    return b1 + b2 + b3 + b4


# ----------------------------------------------------------------------------- relabeling
def test_relabel_targets_and_loss_match_numpy():
    rng = np.random.default_rng(0)
    n, d, size, nn_num, t = 5, 8, 30, 5, 0.07
    unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)  # noqa: E731
    q, k, queue = unit(rng.standard_normal((n, d))), unit(rng.standard_normal((n, d))), unit(rng.standard_normal((size, d))).T
    expect, conf = np_relabel(k, queue, nn_num, t)
    targets, c = relabel_targets(torch.tensor(k), torch.tensor(queue), nn_num, t)
    np.testing.assert_allclose(c.numpy(), conf, rtol=1e-5)
    np.testing.assert_allclose(targets.numpy(), expect, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(targets.sum(1).numpy(), 1.0, rtol=1e-6)
    logits = np.concatenate([(q * k).sum(1, keepdims=True), q @ queue], axis=1) / t
    loss = np.mean([-(expect[i] * np_log_softmax(logits)[i]).sum() for i in range(n)])
    assert soft_cross_entropy(torch.tensor(logits), torch.tensor(expect)).item() == pytest.approx(loss, rel=1e-6)


def test_confidence_edge_cases():
    flat = torch.zeros(3, 100)
    torch.testing.assert_close(key_confidence(flat), torch.zeros(3), atol=1e-6, rtol=0)
    peaked = torch.zeros(2, 100)
    peaked[:, 7] = 1e3  # softmax one-hot: entropy 0
    torch.testing.assert_close(key_confidence(peaked), torch.ones(2), atol=1e-6, rtol=0)
    # flat similarities: c = 0, the target is the plain MoCo one-hot on the key
    targets, c = relabel_targets(torch.ones(2, 4) / 2, torch.ones(4, 50) / 2, 5, 0.07)
    assert torch.equal(targets, torch.cat([torch.ones(2, 1), torch.zeros(2, 50)], 1)) and (c.abs() < 1e-6).all()


# ----------------------------------------------------------------------------- active sampling parts
def test_gradient_embeddings_equal_the_hand_derived_formula():
    rng = np.random.default_rng(1)
    q, cand = rng.standard_normal((6, 5)), rng.standard_normal((12, 5))
    qt = torch.tensor(q, dtype=torch.float32, requires_grad=True)
    g = gradient_embeddings(qt * 1.0, torch.tensor(cand, dtype=torch.float32))
    np.testing.assert_allclose(g.numpy(), np_gradient_embeddings(q, cand), rtol=1e-4, atol=1e-7)
    assert qt.grad is None  # no gradient flows back into the queries (nor the encoder behind them)


def test_kmeans_matches_numpy_with_the_same_init():
    rng = np.random.default_rng(2)
    for trial in range(20):
        n, clusters = 16, 8
        centres = rng.standard_normal((4, 3)) * 3
        x = centres[rng.integers(0, 4, n)] + rng.standard_normal((n, 3)) * (0.3 + trial / 10)
        g = torch.Generator().manual_seed(trial)
        init = torch.randperm(n, generator=torch.Generator().manual_seed(trial))[:clusters].numpy()
        ours = kmeans(torch.tensor(x), clusters, g, 100, 1e-4).numpy()
        np.testing.assert_array_equal(ours, np_kmeans(x, init, 100, 1e-4))
    # max_iter 1 returns the assignment to the initial centroids
    x = torch.tensor(rng.standard_normal((10, 2)))
    init = torch.randperm(10, generator=torch.Generator().manual_seed(5))[:4]
    first = ((x[:, None] - x[init][None]) ** 2).sum(-1).argmin(1)
    assert torch.equal(kmeans(x, 4, torch.Generator().manual_seed(5), max_iter=1), first)


def test_selection_rule_equals_upstreams_counter_loop():
    rng = np.random.default_rng(3)
    cases = {1: 0, 2: 0, 3: 0, 4: 0}
    for trial in range(400):
        bs = int(rng.integers(1, 17))
        used = int(rng.integers(1, bs + 1))  # how many of the bs clusters are non-empty
        skew = rng.dirichlet(np.full(used, [0.2, 1.0, 5.0][trial % 3]))
        labels = rng.choice(rng.permutation(bs)[:used], size=2 * bs, p=skew)
        upstream = upstream_counter_rule(labels.tolist(), bs)
        order, in_first_bins = cluster_rank_order(torch.tensor(labels))
        assert order[:bs].tolist() == upstream[:bs], (labels, bs)
        # legacy_enqueue_all_candidates: all 2 bs when bins 1-3 hold fewer than bs, exactly upstream's list
        assert order[:2 * bs if in_first_bins < bs else bs].tolist() == upstream, (labels, bs)
        b1 = len(set(labels.tolist()))
        b2 = sum(1 for v in set(labels.tolist()) if (labels == v).sum() >= 2)
        b3 = sum(1 for v in set(labels.tolist()) if (labels == v).sum() >= 3)
        case = 1 if b1 >= bs else 2 if b1 + b2 >= bs else 3 if b1 + b2 + b3 >= bs else 4
        cases[case] += 1
        # upstream returns more than bs vectors only when bins 1-3 are too small (its bug; we take bs)
        assert (len(upstream) > bs) == (case == 4) and len(upstream) in (bs, 2 * bs)
    assert all(v > 10 for v in cases.values()), cases  # every branch of upstream's rule was exercised


def test_cluster_rank_order_by_hand():
    # clusters: a = {0, 3, 4}, b = {1}, c = {2, 5}; last members 4, 1, 5 first, then 3, 2, then 0
    order, in_first_bins = cluster_rank_order(torch.tensor([7, 1, 2, 7, 7, 2]))
    assert order.tolist() == [1, 4, 5, 2, 3, 0] and in_first_bins == 6
    assert cluster_rank_order(torch.tensor([0, 0, 0, 0, 0, 1]))[1] == 4  # members 0, 1 of cluster 0: bin 4


# ----------------------------------------------------------------------------- the model
def test_epoch_boundary_matches_the_upstream_1_based_loop():
    """Upstream: `for epoch in range(0, 300): train(epoch + 1)`, active sampling when epoch > 150."""
    model = ASAR(**SMALL, active_sampling_epoch=150)
    assert [model.samples_actively(e) for e in range(300)] == [e1 > 150 for e1 in range(1, 301)]
    assert not model.samples_actively(149) and model.samples_actively(150)


def encode(model, x_q, x_k):
    with torch.no_grad():  # the same encoders again (dropout 0, train-mode BN: batch statistics)
        q = model.encoder_q(x_q).double().numpy()
        k = model.encoder_k(x_k).double().numpy()
    return q / np.linalg.norm(q, axis=1, keepdims=True), k / np.linalg.norm(k, axis=1, keepdims=True)


@pytest.mark.parametrize("epoch, active", [(0, False), (1, True)])
def test_step_loss_and_queue_on_both_sides_of_the_switch(epoch, active):
    torch.manual_seed(0)
    n = 4
    model = ASAR(**SMALL, active_sampling_epoch=1).train()
    model.queue_ptr[0] = 10  # the write wraps around: slots 10, 11, 0, 1
    x_q, x_k = torch.randn(2, n, 3, 12, 20, 1)
    queue = model.queue.clone().numpy().astype(np.float64)
    gen = torch.Generator().manual_seed(7)
    init = torch.randperm(2 * n, generator=torch.Generator().manual_seed(7))[:n].numpy()
    out = model({"views": {"query": x_q, "key": x_k}, "epoch": epoch, "generator": gen})
    assert all(p.grad is None for p in model.parameters())  # no backward ran inside forward
    q, k = encode(model, x_q, x_k)
    targets, _ = np_relabel(k, queue, 5, 0.07)
    logits = np.concatenate([(q * k).sum(1, keepdims=True), q @ queue], axis=1) / 0.07
    loss = np.mean([-(targets[i] * np_log_softmax(logits)[i]).sum() for i in range(n)])
    assert out["loss"].item() == pytest.approx(loss, rel=1e-4)
    assert float(out["active"]) == float(active)
    slots = [10, 11, 0, 1]
    if active:
        cand = np.concatenate([k, queue[:, slots].T], axis=0)
        labels = np_kmeans(np_gradient_embeddings(q, cand), init)
        chosen = upstream_counter_rule(labels.tolist(), n)[:n]
        expect = cand[chosen]
        assert float(out["new_key_share"]) == np.mean(np.array(chosen) < n)
    else:
        expect = k
    np.testing.assert_allclose(model.queue[:, slots].numpy().T, expect, rtol=1e-4, atol=1e-6)
    others = [j for j in range(12) if j not in slots]
    np.testing.assert_array_equal(model.queue[:, others].numpy(), queue[:, others].astype(np.float32))
    assert int(model.queue_ptr) == 2
    out["loss"].backward()
    assert all(p.grad is None for p in model.encoder_k.parameters())
    assert model.encoder_q.st_gcn_networks[0].gcn.conv.weight.grad.abs().sum() > 0


def test_legacy_queue_candidates_are_the_rows_of_the_untransposed_slice():
    """Upstream concatenated the keys (N, D) with the queue slice (D, N) as it is: with
    legacy_queue_candidates the second block holds feature d of the N oldest entries in row N + d."""
    rng = np.random.default_rng(5)
    n = SMALL["feature_dim"]  # upstream's shapes only fit for N = D
    unit = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    q, k = torch.from_numpy(unit(rng.standard_normal((n, n)))), torch.from_numpy(unit(rng.standard_normal((n, n))))
    picks = {}
    for legacy in (False, True):
        torch.manual_seed(0)
        model = ASAR(**SMALL, legacy_queue_candidates=legacy)
        model.queue_ptr[0] = 3
        block = model.queue[:, 3:3 + n].clone()
        keys, chosen = model.select_for_queue(q, k, torch.Generator().manual_seed(1))
        cand = torch.cat([k, block if legacy else block.T])
        labels = np_kmeans(np_gradient_embeddings(q.double().numpy(), cand.double().numpy()),
                           torch.randperm(2 * n, generator=torch.Generator().manual_seed(1))[:n].numpy())
        assert chosen.tolist() == upstream_counter_rule(labels.tolist(), n)[:n]
        torch.testing.assert_close(keys, cand[chosen], rtol=0, atol=0)
        picks[legacy] = keys
    assert not torch.equal(picks[False], picks[True])
    with pytest.raises(ValueError, match="feature_dim"):
        ASAR(**SMALL, legacy_queue_candidates=True).select_for_queue(q[:4], k[:4], None)


@pytest.mark.parametrize("legacy", [False, True])
def test_legacy_enqueue_all_candidates_writes_2n_when_clusters_are_empty(monkeypatch, legacy):
    """k-means leaving clusters empty (here: one cluster for all 2N candidates) puts only 3 candidates in the
    counter's bins 1-3: upstream then enqueued all 2N (legacy), we take N; the queue pointer says which."""
    import net.asar

    n = SMALL["feature_dim"]
    monkeypatch.setattr(net.asar, "kmeans", lambda x, clusters, *a, **k: torch.zeros(len(x), dtype=torch.long))
    torch.manual_seed(0)
    model = ASAR(**SMALL, legacy_enqueue_all_candidates=legacy).train()
    model.queue_ptr[0] = 2
    keys, chosen = model.select_for_queue(*torch.nn.functional.normalize(torch.randn(2, n, n), dim=2), None)
    assert len(chosen) == (2 * n if legacy else n)
    assert chosen.tolist()[:3] == [2 * n - 1, 2 * n - 2, 2 * n - 3]  # bins 1-3: the cluster's last members first


def test_upstream_keys_and_released_checkpoint_loads_for_linear_evaluation(tmp_path):
    """A checkpoint as upstream's io.save_model writes it (a plain state_dict, NTU sizes) loads with the
    upstream ignore_weights; the encoder weights arrive unchanged."""
    from torchlight.io import load_weights

    model = ASAR(num_class=60)
    sd = model.state_dict()
    assert {"queue", "queue_ptr", "labels", "encoder_q.fc.0.weight", "encoder_q.fc.2.weight",
            "encoder_k.fc.2.bias", "encoder_q.data_bn.weight", "encoder_q.edge_importance.0"} <= set(sd)
    assert sd["queue"].shape == (128, 32768) and sd["labels"].shape == (32768,) and (sd["labels"] == -1).all()
    path = tmp_path / "epoch300_model.pt"
    torch.save({k: v.clone() for k, v in sd.items()}, path)
    ev = ASAR(pretrain=False, num_class=60)
    report = load_weights(ev, str(path), ignore=["encoder_q.fc", "encoder_k", "queue", "predict_q", "labels"],
                          allow_missing=ev.head_prefixes())
    assert not report.unexpected and sorted(report.missing) == ["encoder_q.fc.bias", "encoder_q.fc.weight"]
    for key, value in ev.state_dict().items():
        if not key.startswith("encoder_q.fc"):
            torch.testing.assert_close(value, sd[key], rtol=0, atol=0)
    x = torch.randn(2, 3, 10, 25, 2)
    assert ev.forward_head(ev.forward_features(x)).shape == (2, 60)


def test_temperature_is_not_used_and_says_so():
    with pytest.warns(UserWarning, match="Temperature 0.2 is not used"):
        ASAR(**SMALL, Temperature=0.2)


DDP_SCRIPT = """
import sys, numpy as np, torch
import torch.distributed as dist
from net.asar import ASAR
from net.modules import enqueue
dist.init_process_group("gloo")
r = dist.get_rank()
torch.manual_seed(0)
model = ASAR(**{small!r})
model.queue_ptr[0] = 10
data = np.load({data!r})
q, k = (torch.from_numpy(data[name][r * 3:(r + 1) * 3]) for name in ("q", "k"))
gen = torch.Generator().manual_seed(100 + r)  # per-rank streams, as the processor seeds them
keys, chosen = model.select_for_queue(q, k, gen)
enqueue(model.queue, model.queue_ptr, keys, gathered=True)
np.savez({out!r}.format(r), queue=model.queue.numpy(), ptr=model.queue_ptr.numpy(), chosen=chosen.numpy())
dist.destroy_process_group()
"""


def test_two_process_selection_equals_one_process_with_the_global_batch(tmp_path):
    """torchrun x2 (gloo): each rank holds 3 of the 6 queries / keys; both queues end identical and equal
    to one process selecting from all 6 with rank 0's generator."""
    import subprocess

    from conftest import REPO_ROOT
    from test_distributed import TORCHRUN, free_port

    rng = np.random.default_rng(4)
    unit = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    q, k = unit(rng.standard_normal((6, 6))), unit(rng.standard_normal((6, 6)))
    np.savez(tmp_path / "qk.npz", q=q, k=k)
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(root=REPO_ROOT, small=SMALL, data=str(tmp_path / "qk.npz"),
                                        out=str(tmp_path / "rank{}.npz")))
    run = subprocess.run(TORCHRUN + [f"--master_port={free_port()}", str(script)], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    torch.manual_seed(0)
    model = ASAR(**SMALL)
    model.queue_ptr[0] = 10
    keys, chosen = model.select_for_queue(torch.from_numpy(q), torch.from_numpy(k), torch.Generator().manual_seed(100))
    from net.modules import enqueue
    enqueue(model.queue, model.queue_ptr, keys, gathered=True)
    torch.manual_seed(0)
    other = ASAR(**SMALL)
    other.queue_ptr[0] = 10
    _, chosen1 = other.select_for_queue(torch.from_numpy(q), torch.from_numpy(k), torch.Generator().manual_seed(101))
    assert not torch.equal(chosen1, chosen)  # rank 1's own k-means init would choose otherwise: rank 0's wins
    for r in ranks:
        np.testing.assert_array_equal(r["chosen"], chosen.numpy())
        np.testing.assert_array_equal(r["queue"], model.queue.numpy())
        assert int(r["ptr"][0]) == int(model.queue_ptr) == 4


# ----------------------------------------------------------------------------- end to end
def tiny_config(data, work, **overrides):
    from conftest import demo_config

    model_args = {"hidden_channels": 8, "hidden_dim": 32, "feature_dim": 16, "queue_size": 64,
                  "active_sampling_epoch": 1}
    settings = {"num_epoch": 2, "batch_size": 25, "save_interval": 1, **overrides}
    return demo_config("asar_pretrain.yaml", data, work, model_args=model_args, **settings)


def test_pretraining_switches_to_active_sampling_and_resumes_exactly(nw_ucla_small, tmp_path):
    from conftest import demo_config
    from processor.evaluation import Evaluation
    from processor.knn import KNN
    from processor.pretrain import Pretrain
    from torchlight.log import read_metrics

    Pretrain(tiny_config(nw_ucla_small, tmp_path / "full"), name="pretrain_asar").run()
    history = read_metrics(tmp_path / "full" / "metrics.jsonl")
    assert [h["epoch"] for h in history] == [1, 2] and [h["active"] for h in history] == [0.0, 1.0]
    assert history[0]["new_key_share"] == 1.0 and 0.0 <= history[1]["new_key_share"] <= 1.0
    assert all(np.isfinite(h[k]) for h in history for k in ("loss", "confidence"))
    Pretrain(tiny_config(nw_ucla_small, tmp_path / "split", num_epoch=1), name="pretrain_asar").run()
    Pretrain(tiny_config(nw_ucla_small, tmp_path / "split"), name="pretrain_asar").run()  # resumes
    from conftest import same_checkpoints
    a, _ = same_checkpoints(tmp_path / "full", tmp_path / "split")
    assert a["epoch"] == 2 and int(a["model"]["queue_ptr"]) == (2 * 2 * 25) % 64
    # the demo linear probe and kNN load it (ignore_weights drops the pretraining-only keys)
    enc = {"hidden_channels": 8, "hidden_dim": 32}
    weights = str(tmp_path / "full" / "latest.pt")
    cfg = demo_config("asar_linear.yaml", nw_ucla_small, tmp_path / "linear", weights=weights, model_args=enc,
                      num_epoch=1, batch_size=25, eval_interval=1)
    Evaluation(cfg, name="linear_evaluation").run()
    assert (tmp_path / "linear" / "results.json").exists()
    cfg = demo_config("asar_knn.yaml", nw_ucla_small, tmp_path / "knn", weights=weights, model_args=enc)
    KNN(cfg, name="knn").run()
    assert (tmp_path / "knn" / "results.json").exists()


# ----------------------------------------------------------------------------- configs
DATASETS = {"ntu60": (("xsub", "xview"), 60, "ntu60_frame50"), "ntu120": (("xsub", "xset"), 120, "ntu120_frame50"),
            "pku_part1": (("xsub",), 51, "pku_part1_frame50"), "pku_part2": (("xsub",), 51, "pku_part2_frame50")}
ASAR_CONFIGS = [f"config/{ds}/{fam}/{fam}_asar_{b}.yaml" for ds, (benches, _, _) in DATASETS.items()
                for b in benches for fam in ("pretext", "linear_eval")]


def test_config_inventory():
    from conftest import REPO_ROOT
    assert len(ASAR_CONFIGS) == 12
    for path in ASAR_CONFIGS + [f"config/demo/asar_{p}.yaml" for p in ("pretrain", "linear", "knn")]:
        assert os.path.isfile(os.path.join(REPO_ROOT, path)), path


@pytest.mark.parametrize("path", ASAR_CONFIGS)
def test_dataset_configs_hold_the_published_values(path):
    from test_configs import COMMAND, header, processor_for, resolved

    name = processor_for(path)
    command = COMMAND.search(header(path))
    assert command and command.groups() == (name, path), f"{path}: header command"
    _, cfg = resolved(path)
    dataset, family, filename = path.split("/")[1:]
    benches, classes, folder = DATASETS[dataset]
    bench = re.fullmatch(r".*_asar_(\w+)\.yaml", filename).group(1)
    assert cfg["model"] == "net.asar.ASAR" and cfg["model_args"]["num_class"] == classes
    assert cfg["stream"] == "joint" and "publishes no numbers" in header(path)
    assert cfg["work_dir"] == f"./work_dir/{dataset}_{bench}/asar_joint/{family}"
    assert_data_paths(cfg, f"{folder}/{bench}", path)
    if family == "pretext":
        assert name == "pretrain_asar"
        args = cfg["model_args"]
        assert (args["pretrain"], args["feature_dim"], args["queue_size"], args["momentum"], args["Temperature"],
                args["mlp"], args["hidden_channels"], args["hidden_dim"], args["dropout"], args["nn_num"], args["T1"],
                args["T2"], args["active_sampling_epoch"], args["kmeans_iters"], args["kmeans_tol"],
                args["legacy_queue_candidates"], args["legacy_enqueue_all_candidates"], args["target_init"]) == \
               (True, 128, 32768, 0.999, 0.07, True, 16, 256, 0.5, 5, 0.07, 0.07, 150, 100, 1e-4, True, True,
                "independent")
        feeder = cfg["train_feeder_args"]
        assert cfg["train_feeder"] == "feeder.ntu_feeder.Feeder_dual"
        assert (feeder["shear_amplitude"], feeder["temperal_padding_ratio"]) == (0.5, 6)
        assert (cfg["optimizer"], cfg["base_lr"], cfg["momentum"], cfg["nesterov"], cfg["weight_decay"], cfg["step"],
                cfg["num_epoch"], cfg["batch_size"], cfg["save_interval"], cfg["eval_interval"]) == \
               ("SGD", 0.1, 0.9, False, 1e-4, [250], 300, 128, 5, -1)
        assert args["queue_size"] % cfg["batch_size"] == 0
        return
    assert name == "linear_evaluation" and not cfg["model_args"]["pretrain"]
    for key in ("train_feeder", "test_feeder"):
        assert cfg[key] == "feeder.ntu_feeder.Feeder_single"
        assert (cfg[f"{key}_args"]["shear_amplitude"], cfg[f"{key}_args"]["temperal_padding_ratio"]) == (-1, -1)
    assert cfg["ignore_weights"] == ["encoder_q.fc", "encoder_k", "queue", "labels"]
    _, pretext = resolved(path.replace("linear_eval", "pretext"))
    assert cfg["weights"] == f"{pretext['work_dir']}/epoch{pretext['num_epoch']}_model.pt"
    assert (cfg["protocol"], cfg["base_lr"], cfg["momentum"], cfg["nesterov"], cfg["weight_decay"], cfg["step"],
            cfg["num_epoch"], cfg["batch_size"], cfg["eval_interval"]) == ("linear", 3.0, 0.9, False, 0.0, [80], 100,
                                                                           128, 5)


def test_demo_switches_at_half_the_schedule():
    from test_configs import resolved

    _, cfg = resolved("config/demo/asar_pretrain.yaml")
    assert cfg["model_args"]["active_sampling_epoch"] * 2 == cfg["num_epoch"] == 30
    assert (cfg["model_args"]["queue_size"], cfg["model_args"]["momentum"]) == (256, 0.99)
