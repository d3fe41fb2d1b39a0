"""tools/convert_config.py on upstream-style configs (each written here with the keys and values the
specs give for that upstream file)."""
import textwrap

import pytest

from tools import convert_config

AIMCLR_PRETEXT = """
work_dir: /data/somewhere/ntu60_cv/aimclr_joint/pretext
train_feeder: feeder.ntu_feeder.Feeder_triple
train_feeder_args:
  data_path: ./data/ntu60_frame50/xview/train_position.npy
  label_path: ./data/ntu60_frame50/xview/train_label.pkl
  shear_amplitude: 0.5
  temperal_padding_ratio: 6
  mmap: True
model: net.skeletonclr.SkeletonCLR
model_args:
  base_encoder: net.st_gcn.Model
  pretrain: True
  feature_dim: 128
  queue_size: 32768
  momentum: 0.999
  Temperature: 0.07
  mlp: True
  in_channels: 3
  hidden_channels: 16
  hidden_dim: 256
  num_class: 60
  dropout: 0.5
  graph_args: {layout: 'ntu-rgb+d', strategy: 'spatial'}
  edge_importance_weighting: True
nesterov: False
weight_decay: 1e-4
base_lr: 0.1
optimizer: SGD
step: [250]
device: [3]
batch_size: 128
test_batch_size: 128
num_epoch: 300
start_epoch: 0
view: 'joint'
save_interval: 5
eval_interval: -1
"""

STARS_MERGED = """
work_dir: ./checkpoint/ntu60_xsub/merged/pretext/
train_feeder: feeder.ntu_feeder.Feeder_dual
train_feeder_args: {data_path: ./data/NTU60_XSub.npz, split: 'train', p_interval: [1.0], window_size: 120,
                    shear_amplitude: -1, aug_method: '', mmap: True}
mem_train_feeder: feeder.ntu_feeder.Feeder_single
mem_train_feeder_args: {data_path: ./data/NTU60_XSub.npz, split: 'train', p_interval: [0.95], window_size: 120,
                        shear_amplitude: -1, aug_method: '', mmap: True}
mem_test_feeder: feeder.ntu_feeder.Feeder_single
mem_test_feeder_args: {data_path: ./data/NTU60_XSub.npz, split: 'test', p_interval: [0.95], window_size: 120,
                       shear_amplitude: -1, aug_method: '', mmap: True}
model: net.nnclr.SkeletonNNCLR
model_args:
  base_encoder: net.transformer.Transformer
  weights: pretrained_weights/mamp_ntu60_xsub.pth
  pretrain: True
  topk: 0
  queue_size: 32768
  momentum: 0.999
  Temperature: 0.07
  dim_in: 3
  dim_feat: 256
  predictor_hidden_dim: 4096
  feature_dim: 256
  num_class: 60
  depth: 8
  num_heads: 8
  num_frames: 120
  qk_scale: None
  drop_rate: 0.
weight_decay: 0.05
base_lr: 0.001
optimizer: AdamW
third_stage: True
fully_tune: False
layer_decay: 0.45
device: [0,1,2,3]
batch_size: 32
num_epoch: 10
stream: 'joint'
loss: ''
clip_grad: 3
save_interval: 1
eval_interval: -1
knn_interval: 1
knn_k: [10, 20, 40]
knn_classes: 60
knn_t: 0.1
KNN_show: [50, 100]
"""

MAMP_SEMI = """
feeder: feeder.feeder_ntu_semi.Feeder
train_feeder_args: {data_path: data/ntu/NTU60_XSub.npz, data_ratio: 0.01, split: train, debug: False,
                    random_choose: False, window_size: 120, normalization: False, random_rot: True,
                    p_interval: [0.5, 1], vel: False, bone: False}
val_feeder_args: {data_path: data/ntu/NTU60_XSub.npz, split: test, debug: False, window_size: 120,
                  p_interval: [0.95], vel: False, bone: False}
model: model.transformer.Transformer
model_args: {dim_in: 3, num_classes: 60, dim_feat: 256, depth: 8, num_heads: 8, mlp_ratio: 4, num_frames: 120,
             num_joints: 25, patch_size: 1, t_patch_size: 4, qkv_bias: True, qk_scale: None, drop_rate: 0.,
             attn_drop_rate: 0., drop_path_rate: 0.3, protocol: finetune}
epochs: 100
warmup_epochs: 5
batch_size: 24
lr: 5e-4
layer_decay: 0.8
smoothing: 0.1
"""


def run(tmp_path, text, *args):
    src = tmp_path / "upstream.yaml"
    src.write_text(textwrap.dedent(text))
    out = tmp_path / "ours.yaml"
    code = convert_config.main([str(src), "--out", str(out), *args])
    return code, out


def test_lineage_pretext_maps_and_validates(tmp_path):
    code, out = run(tmp_path, AIMCLR_PRETEXT)
    assert code == 0
    cfg = convert_config.validate_output(convert_config.yaml.safe_load(out.read_text()), "pretrain_skeletonclr",
                                         str(out))
    assert cfg["weight_decay"] == 1e-4 and isinstance(cfg["weight_decay"], float)  # YAML 1.1 "1e-4" fixed
    assert cfg["stream"] == "joint" and cfg["model_args"]["queue_size"] == 32768 and cfg["batch_size"] == 128
    assert out.read_text().startswith("# python main.py pretrain_skeletonclr --config")
    # what upstream computed, kept: the key encoder as its own draw, replayed augmentations, whole-batch BN
    assert (cfg["model_args"]["target_init"], cfg["replay_augmentation"], cfg["sync_bn"]) == ("independent", True, True)
    assert "model_args.target_init: 'independent' (what upstream computed" in out.read_text()


def test_stars_stage2_brings_its_hidden_values(tmp_path, capsys):
    code, out = run(tmp_path, STARS_MERGED)
    assert code == 0
    text = out.read_text()
    cfg = convert_config.validate_output(convert_config.yaml.safe_load(text), "pretrain_clrtuning", str(out))
    assert cfg["model"] == "net.stars.STARS" and cfg["weights"] == "pretrained_weights/mamp_ntu60_xsub.pth"
    assert cfg["batch_size"] == 128  # 32 per GPU on the 4 GPUs of `device`
    assert cfg["weight_decay"] == 0.01 and cfg["clip_grad_per_tensor"] == 3
    assert cfg["model_args"]["third_stage"] is True and cfg["model_args"]["layer_decay"] == 0.45
    assert cfg["model_args"]["hidden_dim"] == 4096 and cfg["scheduler"] == "constant" and cfg["sync_bn"]  # base
    assert cfg["train_feeder"] == "feeder.npz_feeder.Feeder" and "aug_method" not in cfg["train_feeder_args"]
    assert cfg["knn_train_feeder_args"]["split"] == "train" and cfg["knn_test_feeder_args"]["p_interval"] == [0.95]
    err = capsys.readouterr().err
    assert "KNN_show" in err and "knn_classes" in err and "Not mapped" in text  # reported, not dropped silently
    assert "base_encoder" not in err and "predictor_hidden_dim" not in err


def test_mamp_semi_config_uses_the_mamp_base(tmp_path):
    code, out = run(tmp_path, MAMP_SEMI, "--gpus", "2")
    assert code == 0
    raw = convert_config.yaml.safe_load(out.read_text())
    assert raw["base"].endswith("config/_mamp_finetune.yaml")
    cfg = convert_config.validate_output(raw, "finetune_evaluation", str(out))
    assert (cfg["num_epoch"], cfg["warm_up_epoch"], cfg["base_lr"], cfg["label_smoothing"]) == (100, 5, 5e-4, 0.1)
    assert cfg["label_fraction"] == 0.01 and cfg["batch_size"] == 48 and cfg["model_args"]["layer_decay"] == 0.8
    assert cfg["test_feeder_args"]["split"] == "test" and cfg["optimizer"] == "AdamW"  # from the base


def test_a_feature_we_lack_is_reported(tmp_path, capsys):
    code, out = run(tmp_path, MAMP_SEMI.replace("vel: False, bone: False}\nval", "vel: True, bone: False}\nval"))
    assert code == 0 and "train_feeder_args.vel: True" in capsys.readouterr().err


def test_not_a_training_config(tmp_path):
    src = tmp_path / "x.yaml"
    src.write_text("a: 1\n")
    with pytest.raises(SystemExit, match="no `model:`"):
        convert_config.main([str(src)])


CACA_3VIEWS_PRETEXT = """
work_dir: ./work_dir/ntu60_cs/caca_3views_cross_2_10/pretext
train_feeder: feeder.ntu_feeder.Feeder_dual
train_feeder_args:
  data_path: /data1/gty/action_dataset/ntu60_frame50/xsub/train_position.npy
  label_path: /data1/gty/action_dataset/ntu60_frame50/xsub/train_label.pkl
  shear_amplitude: 0.5
  temperal_padding_ratio: 6
  mmap: True
model: net.caca_three_modal.CACA_3views
model_args:
  base_encoder: net.st_gcn.Model
  pretrain: True
  feature_dim: 512
  projection_hidden_size: 2048
  projection_size: 512
  prediction_hidden_size: 2048
  moving_average_decay: 0.996
  use_momentum: True
  in_channels: 3
  hidden_channels: 16
  num_class: 60
  dropout: 0.5
  graph_args: {layout: 'ntu-rgb+d', strategy: 'spatial'}
  edge_importance_weighting: True
  topk: 2
  lamb: 10
cross_epoch: 60
knn_monitor: True
knn_interval: 1000
knn_k: [20]
knn_t: 0.1
nesterov: False
weight_decay: 1e-4
base_lr: 0.1
optimizer: SGD
step: [300]
device: [0]
batch_size: 128
test_batch_size: 128
num_epoch: 100
stream: 'all'
save_interval: 5
eval_interval: -1
"""

SKELEMIX_PRETEXT = """
work_dir: /data/ChenZhan/work_dir/skelemixclr_multi_swap
train_feeder: feeder.ntu_feeder.Feeder_multi
train_feeder_args:
  data_path: ./data/NTU60_frame64/xview/train_position.npy
  label_path: ./data/NTU60_frame64/xview/train_label.pkl
  shear_amplitude: 0.5
  temperal_padding_ratio: 6
  frames: [64]
  mmap: True
model: net.skeletonclr_multi_swapv2.SkeletonCLR
model_args:
  base_encoder: net.st_gcn_swap.Model
  pretrain: True
  feature_dim: 128
  queue_size: 32768
  momentum: 0.999
  Temperature: 0.2
  mlp: True
  in_channels: 3
  hidden_channels: 16
  hidden_dim: 256
  num_class: 60
  dropout: 0.5
  swap_cfg: {swap_params: [[2, 3, 7, 11, 3, 1.0]], swap_mode: swap, spatial_mode: semantic}
  graph_args: {layout: 'ntu-rgb+d', strategy: 'spatial'}
  edge_importance_weighting: True
mining_epoch: 300
nesterov: False
weight_decay: 1e-4
base_lr: 0.1
optimizer: SGD
step: [300]
batch_size: 128
num_epoch: 300
view: 'joint'
save_interval: 5
"""


def test_caca_three_stream_config_converts(tmp_path, capsys):
    """A CMCS three-stream pretext YAML: our class, cross_epoch moved into model_args, validated."""
    code, out = run(tmp_path, CACA_3VIEWS_PRETEXT)
    assert code == 0
    cfg = convert_config.validate_output(convert_config.yaml.safe_load(out.read_text()), "pretrain_skeleton_3views",
                                         str(out))
    assert cfg["model"] == "net.caca.CACA3Views" and cfg["stream"] == "all"
    assert cfg["model_args"]["cross_epoch"] == 60 and cfg["model_args"]["lamb"] == 10
    assert out.read_text().startswith("# python main.py pretrain_skeleton_3views --config")
    assert "knn_monitor" in capsys.readouterr().err  # reported as without effect, not dropped silently


def test_skelemixclr_plus_config_converts(tmp_path):
    code, out = run(tmp_path, SKELEMIX_PRETEXT)
    assert code == 0
    cfg = convert_config.validate_output(convert_config.yaml.safe_load(out.read_text()),
                                         "pretrain_skeletonclr_multi_swapv2", str(out))
    assert cfg["model"] == "net.skelemixclr.SkeleMixCLR" and cfg["model_args"]["base_encoder"] == "net.st_gcn.Model"
    assert cfg["train_feeder"] == "feeder.multi_feeder.Feeder_multi"
    assert cfg["model_args"]["swap_cfg"]["swap_params"] == [[2, 3, 7, 11, 3, 1.0]]
    # upstream's encoder builds the 2s-AGCN graph whatever graph_args say
    assert cfg["model_args"]["graph_args"] == {"layout": "ntu-rgb+d", "strategy": "agcn"}
    assert "-> 'agcn'" in out.read_text()


# czhaneva/SkeleMixCLR config/linear_eval/linear_eval_skelemixclr_multi_swap_ntu.yaml, its model part (paths shortened):
# the lineage's class names, but SkeleMixCLR's net/st_gcn.py builds the 2s-AGCN graph
SKELEMIX_LINEAR = """
work_dir: work_dir/seed2/skeclr_multi_swap/semantic_swap/64_3_1/st_gcn/agcn_graph/ntu/joint/LE_0_xview
weights: work_dir/seed2/skeclr_multi_swap/semantic_swap/64_3_1/st_gcn/agcn_graph/ntu/joint/0_xview/epoch300_model.pt
ignore_weights: [encoder_q.fc, encoder_k, queue, encoder_q.Ap]
train_feeder: feeder.ntu_feeder.Feeder_single
train_feeder_args: {data_path: ./data/train_position.npy, label_path: ./data/train_label.pkl}
test_feeder: feeder.ntu_feeder.Feeder_single
test_feeder_args: {data_path: ./data/val_position.npy, label_path: ./data/val_label.pkl}
model: net.skeletonclr.SkeletonCLR
model_args:
  base_encoder: net.st_gcn.Model
  pretrain: False
  in_channels: 3
  hidden_channels: 16
  hidden_dim: 256
  num_class: 60
  dropout: 0.5
  graph_args: {layout: 'ntu-rgb+d', strategy: 'spatial'}
  edge_importance_weighting: True
base_lr: 3.0
step: [80]
num_epoch: 150
"""


def test_skelemixclr_linear_eval_gets_the_agcn_graph_and_lineage_configs_keep_spatial(tmp_path):
    code, out = run(tmp_path, SKELEMIX_LINEAR)
    assert code == 0
    cfg = convert_config.yaml.safe_load(out.read_text())
    assert cfg["model_args"]["graph_args"]["strategy"] == "agcn"
    code, out = run(tmp_path, AIMCLR_PRETEXT)
    assert code == 0
    assert convert_config.yaml.safe_load(out.read_text())["model_args"]["graph_args"]["strategy"] == "spatial"


# WGQ109/ASAR config/ntu60/pretext/pretext_asar_xview.yaml, as its keys and values are (paths shortened)
ASAR_PRETEXT = """
work_dir: /data/wgq/ICIP_github/ntu60_cv/asar_joint/pretext
train_feeder: feeder.ntu_feeder.Feeder_triple
train_feeder_args:
  data_path: ./data/ntu60_frame50/xview/train_position.npy
  label_path: ./data/ntu60_frame50/xview/train_label.pkl
  shear_amplitude: 0.5
  temperal_padding_ratio: 6
  mmap: True
model: net.asar.ASAR
model_args:
  base_encoder: net.st_gcn.Model
  pretrain: True
  feature_dim: 128
  queue_size: 32768
  momentum: 0.999
  Temperature: 0.07
  mlp: True
  in_channels: 3
  hidden_channels: 16
  hidden_dim: 256
  num_class: 60
  dropout: 0.5
  graph_args: {layout: 'ntu-rgb+d', strategy: 'spatial'}
  edge_importance_weighting: True
nesterov: False
weight_decay: 1e-4
base_lr: 0.1
optimizer: SGD
step: [250]
device: [3]
batch_size: 128
test_batch_size: 128
num_epoch: 300
start_epoch: 0
stream: 'joint'
topk: 1
mining_epoch: 0
save_interval: 5
eval_interval: -1
"""

ASAR_LINEAR = """
work_dir: /data/wgq/ICIP_github/ntu60_cv/asar_joint/linear_eval
weights: /home/wgq/ICIP_weights/ntu60_cv/asar_joint/pretext/epoch300_model.pt
ignore_weights: [encoder_q.fc, encoder_k, queue,predict_q,labels]
train_feeder: feeder.ntu_feeder.Feeder_single
train_feeder_args: {data_path: ./data/ntu60_frame50/xview/train_position.npy,
                    label_path: ./data/ntu60_frame50/xview/train_label.pkl,
                    shear_amplitude: -1, temperal_padding_ratio: -1, mmap: True}
test_feeder: feeder.ntu_feeder.Feeder_single
test_feeder_args: {data_path: ./data/ntu60_frame50/xview/val_position.npy,
                   label_path: ./data/ntu60_frame50/xview/val_label.pkl,
                   shear_amplitude: -1, temperal_padding_ratio: -1, mmap: True}
model: net.asar.ASAR
model_args:
  base_encoder: net.st_gcn.Model
  pretrain: False
  in_channels: 3
  hidden_channels: 16
  hidden_dim: 256
  num_class: 60
  dropout: 0.5
  graph_args: {layout: 'ntu-rgb+d', strategy: 'spatial'}
  edge_importance_weighting: True
nesterov: False
weight_decay: 0.0
base_lr: 3.
optimizer: SGD
step: [80]
device: [0]
batch_size: 128
test_batch_size: 128
num_epoch: 100
stream: 'joint'
save_interval: -1
eval_interval: 5
"""


def test_asar_configs_convert(tmp_path, capsys):
    """ASAR pretext: our class and processor, Feeder_triple -> Feeder_dual (its extreme view was never
    used), the unused `topk` / `mining_epoch` reported; the linear config keeps upstream's ignore list."""
    code, out = run(tmp_path, ASAR_PRETEXT)
    assert code == 0
    text = out.read_text()
    cfg = convert_config.validate_output(convert_config.yaml.safe_load(text), "pretrain_asar", str(out))
    assert text.startswith("# python main.py pretrain_asar --config")
    assert cfg["model"] == "net.asar.ASAR" and cfg["train_feeder"] == "feeder.ntu_feeder.Feeder_dual"
    assert cfg["model_args"]["queue_size"] == 32768 and cfg["weight_decay"] == 1e-4 and cfg["stream"] == "joint"
    assert "topk" not in cfg["model_args"] and "mining_epoch" not in cfg["model_args"]
    args = cfg["model_args"]  # batch 128 = feature_dim 128: upstream's untransposed slice ran, so it is kept
    assert args["legacy_queue_candidates"] and args["legacy_enqueue_all_candidates"]
    err = capsys.readouterr().err
    assert "topk: 1 (parsed by upstream's pretrain_asar, never used)" in err and "mining_epoch: 0" in err
    assert "Feeder_triple -> feeder.ntu_feeder.Feeder_dual" in text
    code, out = run(tmp_path, ASAR_LINEAR)
    assert code == 0
    cfg = convert_config.validate_output(convert_config.yaml.safe_load(out.read_text()), "linear_evaluation",
                                         str(out))
    assert cfg["model"] == "net.asar.ASAR" and not cfg["model_args"]["pretrain"]
    assert cfg["ignore_weights"] == ["encoder_q.fc", "encoder_k", "queue", "predict_q", "labels"]
    assert cfg["base_lr"] == 3.0 and cfg["step"] == [80] and cfg["num_epoch"] == 100
