#!/usr/bin/env bash
# SkelSSL runs, as the seed READMEs run them. Usage:
#   bash run.sh [section]        section: demo (default), nwucla_full, ntu60, ntu120, stars, stars_ntu60
#   NPROC=4 bash run.sh ntu60    pretrain on 4 GPUs with torchrun (NTU sections only)
#   PYTHON=python3 bash run.sh   the interpreter to use (default: python)
#
#   demo         NW-UCLA (bundled): prepare the data, SkeletonCLR pretraining for 5 epochs, then
#                linear evaluation and kNN of that encoder. A few minutes on 2 CPU cores.
#   nwucla_full  NW-UCLA: the full 30-epoch SkeletonCLR schedule (about 25 min on one CPU core), then
#                linear evaluation and kNN, in ./work_dir/nw_ucla/skeletonclr/.
#   ntu60        NTU60 x-sub, joint stream: SkeletonCLR pretext (300 epochs), linear evaluation
#                (expected top-1 68.3 %), kNN. Needs data/ntu60_frame50/xsub/ (see the README).
#   ntu120       NTU120 x-sub, joint stream: the same (expected linear top-1 56.8 %).
#                Needs data/ntu120_frame50/xsub/.
#   stars        NW-UCLA (bundled): STARS' three stages with a small transformer: MAMP pretraining (5
#                epochs), contrastive tuning (2 epochs), linear probe, kNN, 10 % semi-supervised.
#   stars_ntu60  NTU60 x-sub, the STARS seed commands: MAMP (400 epochs), the merged stage 2, linear
#                (expected 87.1 %), kNN k=1 (79.9 %), fine-tuning (93.0 %). Needs data/ntu/NTU60_XSub.npz.
#   aimclr, crossclr, caca, skelemixclr, asar
#                NW-UCLA (bundled): that method's demo, 2 pretraining epochs then its linear probe and
#                kNN (the configs' full 30-epoch schedule: EPOCHS=30 bash run.sh aimclr). The 2-epoch
#                ASAR demo switches active sampling on for its second epoch (EPOCHS=30: at epoch 16).
#   caca_ntu60   NTU60 x-sub, the 3s-CACA seed commands: three-stream pretraining, the summed 3-stream
#                linear probe (expected 78.57 %), then the joint-stream pair. Needs data/ntu60_frame50/xsub/.
#   skelemixclr_ntu60
#                NTU60 x-view, the SkeleMixCLR+ seed commands: pretraining (64 frames), linear probe
#                (expected 85.5 %). Needs data/ntu60_frame64/xview/ (tools/lineage_frames.py --frames 64).
#   hysp         NW-UCLA (bundled): the HYSP demo, 2 pretraining epochs (epoch 1 cosine, epoch 2 Poincaré;
#                EPOCHS=30 keeps the config's 4 -> 8 curriculum), linear probe with the Möbius head, kNN.
#   hysp_ntu60   NTU60 x-view, the HYSP seed commands: joint, motion and bone pretraining (600 epochs each),
#                linear evaluation of each (fp16), the 3-stream ensemble. Needs data/ntu60_frame50/xview/.
#   penn_action  Penn Action 2-D poses (13 joints, 15 actions; not bundled: PENN_ACTION=<Penn_Action>/labels,
#                default ../shared/data/penn_action/labels): import, SkeletonCLR pretraining (100 epochs, about
#                35 min on 2 cores), linear evaluation and kNN, and the same for 3 random-init encoders.
#   asar_ntu60   NTU60 x-view, the ASAR seed commands: pretraining (300 epochs, active sampling from
#                epoch 151), linear probe (ASAR publishes no number). Needs data/ntu60_frame50/xview/.
# Other streams / benchmarks: the configs under config/ntu60 and config/ntu120 (each YAML's first
# lines give its command). Every run resumes from its work_dir's latest.pt when run again.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
PYTHON="${PYTHON:-python}"
NPROC="${NPROC:-1}"
SECTIONS="demo nwucla_full ntu60 ntu120 stars stars_ntu60 aimclr crossclr caca skelemixclr caca_ntu60 skelemixclr_ntu60 asar asar_ntu60 hysp hysp_ntu60 penn_action"

run() {
    echo "+ $*"
    "$@"
}

prepare_nw_ucla() {
    if [[ -f data/nw_ucla/frame50/manifest.json ]]; then
        echo "data/nw_ucla/frame50 is already prepared (manifest.json exists): skipping data preparation"
    else
        run "$PYTHON" tools/nw_ucla_gendata.py frames --src data/nw_ucla/nw_ucla_skeletons.npz \
            --out_folder data/nw_ucla/frame50
    fi
}

# pretrain <config> [processor]: one process, or torchrun with NPROC processes (batch_size is the global batch)
pretrain() {
    local processor="${2:-pretrain_skeletonclr}"
    if [[ "$NPROC" -gt 1 ]]; then
        run torchrun --nproc_per_node="$NPROC" main.py "$processor" --config "$1"
    else
        run "$PYTHON" main.py "$processor" --config "$1"
    fi
}

require_data() {
    local folder=$1
    for f in train_position.npy train_label.pkl val_position.npy val_label.pkl; do
        if [[ ! -f "$folder/$f" ]]; then
            echo "error: $folder/$f not found. Prepare the NTU frame-50 data first (README, data section);" >&2
            echo "       the configs read ./$folder/{train,val}_{position.npy,label.pkl}." >&2
            exit 1
        fi
    done
}

demo() {
    prepare_nw_ucla
    run "$PYTHON" main.py pretrain_skeletonclr --config config/demo/skeletonclr_pretrain.yaml --num_epoch 5 \
        --work_dir ./work_dir/demo/skeletonclr/pretext
    run "$PYTHON" main.py linear_evaluation --config config/demo/skeletonclr_linear_recalibrated.yaml
    run "$PYTHON" main.py knn --config config/demo/skeletonclr_knn.yaml
}

nwucla_full() {
    # Own work dirs: the demo's 5-epoch runs in ./work_dir/demo/ are neither resumed nor overwritten.
    local wd=./work_dir/nw_ucla/skeletonclr
    prepare_nw_ucla
    run "$PYTHON" main.py pretrain_skeletonclr --config config/demo/skeletonclr_pretrain.yaml --work_dir "$wd/pretext"
    run "$PYTHON" main.py linear_evaluation --config config/demo/skeletonclr_linear.yaml --work_dir "$wd/linear" \
        --weights "$wd/pretext/epoch30_model.pt"
    run "$PYTHON" main.py linear_evaluation --config config/demo/skeletonclr_linear_recalibrated.yaml \
        --work_dir "$wd/linear_recalibrated" --weights "$wd/pretext/epoch30_model.pt"
    run "$PYTHON" main.py knn --config config/demo/skeletonclr_knn.yaml --work_dir "$wd/knn" \
        --weights "$wd/pretext/epoch30_model.pt"
}

ntu() {  # ntu <dataset> <benchmark>: pretext, linear evaluation and kNN of the joint stream
    local ds=$1 bench=$2
    require_data "data/${ds}_frame50/$bench"
    pretrain "config/$ds/pretext/pretext_skeletonclr_${bench}_joint.yaml"
    run "$PYTHON" main.py linear_evaluation --config "config/$ds/linear_eval/linear_eval_skeletonclr_${bench}_joint.yaml"
    run "$PYTHON" main.py knn --config "config/$ds/knn/knn_skeletonclr_${bench}_joint.yaml"
}

ntu60() {
    # = python main.py pretrain_skeletonclr --config config/ntu60/pretext/pretext_skeletonclr_xsub_joint.yaml
    #   (NPROC=4: torchrun --nproc_per_node=4 main.py pretrain_skeletonclr --config <same>)
    #   python main.py linear_evaluation --config config/ntu60/linear_eval/linear_eval_skeletonclr_xsub_joint.yaml
    #   python main.py knn --config config/ntu60/knn/knn_skeletonclr_xsub_joint.yaml
    ntu ntu60 xsub
}

ntu120() {
    # = the ntu60 commands with config/ntu120/.../*_skeletonclr_xsub_joint.yaml
    ntu ntu120 xsub
}

stars() {
    if [[ ! -f data/nw_ucla/raw/manifest.json ]]; then
        run "$PYTHON" tools/nw_ucla_gendata.py raw --out_folder data/nw_ucla/raw
    fi
    run "$PYTHON" main.py pretrain_mamp --config config/demo/stars_pretrain_mamp.yaml --num_epoch 5 --knn_interval 5
    run "$PYTHON" main.py pretrain_clrtuning --config config/demo/stars_clrtuning.yaml --num_epoch 2
    run "$PYTHON" main.py linear_evaluation --config config/demo/stars_linear.yaml
    run "$PYTHON" main.py knn --config config/demo/stars_knn.yaml
    run "$PYTHON" main.py finetune_evaluation --config config/demo/stars_semi.yaml --num_epoch 5
    run "$PYTHON" main.py knn --config config/demo/stars_fewshot.yaml
}

stars_ntu60() {
    # = torchrun --nproc_per_node=4 main.py pretrain_mamp --config config/ntu60/pretext/pretext_mamp_xsub.yaml
    #   torchrun --nproc_per_node=4 main.py pretrain_clrtuning --config config/ntu60/pretext/clrtuning_xsub_merged.yaml
    #   python main.py linear_evaluation --config config/ntu60/linear_eval/linear_eval_stars_xsub.yaml
    #   python main.py knn --config config/ntu60/knn/knn_stars_xsub.yaml
    #   python main.py finetune_evaluation --config config/ntu60/finetune_eval/finetune_eval_stars_xsub.yaml
    #   python main.py knn --config config/ntu60/knn/fewshot_stars_xsub.yaml   (needs data/ntu120/NTU120_XSub.npz)
    if [[ ! -f data/ntu/NTU60_XSub.npz ]]; then
        echo "error: data/ntu/NTU60_XSub.npz not found; make it with tools/ntu_npz_gendata.py (README, data section)" >&2
        exit 1
    fi
    pretrain config/ntu60/pretext/pretext_mamp_xsub.yaml pretrain_mamp
    pretrain config/ntu60/pretext/clrtuning_xsub_merged.yaml pretrain_clrtuning
    run "$PYTHON" main.py linear_evaluation --config config/ntu60/linear_eval/linear_eval_stars_xsub.yaml
    run "$PYTHON" main.py knn --config config/ntu60/knn/knn_stars_xsub.yaml
    run "$PYTHON" main.py finetune_evaluation --config config/ntu60/finetune_eval/finetune_eval_stars_xsub.yaml
}

method_demo() {  # method_demo <method> <processor> <frames> <eval processor>: NW-UCLA pretraining, linear, kNN
    local method=$1 processor=$2 frames=$3 evaluation=$4
    if [[ ! -f "data/nw_ucla/frame$frames/manifest.json" ]]; then
        run "$PYTHON" tools/nw_ucla_gendata.py frames --src data/nw_ucla/nw_ucla_skeletons.npz \
            --out_folder "data/nw_ucla/frame$frames" --frames "$frames"
    fi
    local extra=()
    if [[ "$method" == asar && -z "${EPOCHS:-}" ]]; then
        extra=(--model_args.active_sampling_epoch 1)  # the 2-epoch run crosses ASAR's active-sampling switch
    fi
    if [[ "$method" == hysp && -z "${EPOCHS:-}" ]]; then  # the 2-epoch run: cosine, then Poincaré
        extra=(--model_args.initial_hyper_epoch 1 --model_args.final_hyper_epoch 2)
    fi
    run "$PYTHON" main.py "$processor" --config "config/demo/${method}_pretrain.yaml" --num_epoch "${EPOCHS:-2}" \
        ${extra[@]+"${extra[@]}"}
    run "$PYTHON" main.py "$evaluation" --config "config/demo/${method}_linear.yaml"
    run "$PYTHON" main.py knn --config "config/demo/${method}_knn.yaml"
}

caca_ntu60() {
    # = the 3s-CACA seed README's commands, with this repository's config paths
    require_data data/ntu60_frame50/xsub
    pretrain config/ntu60/pretext/pretext_caca_3views_xsub.yaml pretrain_skeleton_3views
    run "$PYTHON" main.py linear_evaluation_3views --config config/ntu60/linear_eval/linear_eval_caca_3views_xsub.yaml
    pretrain config/ntu60/pretext/pretext_caca_xsub_joint.yaml pretrain_skeleton
    run "$PYTHON" main.py linear_evaluation --config config/ntu60/linear_eval/linear_eval_caca_xsub_joint.yaml
}

skelemixclr_ntu60() {
    # = python main.py pretrain_skeletonclr_multi_swapv2 --config config/ntu60/pretext/pretext_skelemixclr_xview_joint.yaml
    #   python main.py linear_evaluation --config config/ntu60/linear_eval/linear_eval_skelemixclr_xview_joint.yaml
    require_data data/ntu60_frame64/xview
    pretrain config/ntu60/pretext/pretext_skelemixclr_xview_joint.yaml pretrain_skeletonclr_multi_swapv2
    run "$PYTHON" main.py linear_evaluation --config config/ntu60/linear_eval/linear_eval_skelemixclr_xview_joint.yaml
}

asar_ntu60() {
    # = the ASAR seed README's NTU60 commands, with this repository's config paths:
    #   python main.py pretrain_asar --config config/ntu60/pretext/pretext_asar_xview.yaml
    #   python main.py linear_evaluation --config config/ntu60/linear_eval/linear_eval_asar_xview.yaml
    # (its NTU120 x-sub / PKU-MMD I commands: config/ntu120/{pretext,linear_eval}/*_asar_xsub.yaml,
    #  config/pku_part1/{pretext,linear_eval}/*_asar_xsub.yaml)
    require_data data/ntu60_frame50/xview
    pretrain config/ntu60/pretext/pretext_asar_xview.yaml pretrain_asar
    run "$PYTHON" main.py linear_evaluation --config config/ntu60/linear_eval/linear_eval_asar_xview.yaml
}

hysp_ntu60() {
    # = the HYSP seed README's commands, with this repository's config paths (one stream per run):
    #   python main_pretrain.py with upstream's ntu60/pretext/pretext_xview.yaml (stream: joint / motion / bone)
    #   python main_eval.py with upstream's ntu60/eval/eval_xview.yaml (protocol: linear)
    #   python src/ensemble/ensemble_ntu.py (3-stream ensemble)
    require_data data/ntu60_frame50/xview
    local s
    for s in joint motion bone; do
        pretrain "config/ntu60/pretext/pretext_hysp_xview_$s.yaml" pretrain_hysp
        run "$PYTHON" main.py linear_evaluation --config "config/ntu60/linear_eval/linear_eval_hysp_xview_$s.yaml"
    done
    # upstream tunes the weights on the test split (--search reports that too); default: 0.6 / 0.4 / 0.6
    run "$PYTHON" tools/ensemble.py work_dir/ntu60_xview/hysp_joint/linear_eval \
        work_dir/ntu60_xview/hysp_motion/linear_eval work_dir/ntu60_xview/hysp_bone/linear_eval --search
}

penn_action() {
    local labels="${PENN_ACTION:-../shared/data/penn_action/labels}" wd=./work_dir/demo/penn_action/skeletonclr s
    if [[ ! -f data/penn_action/frame50/manifest.json ]]; then
        if [[ ! -d "$labels" ]]; then
            echo "error: the Penn Action labels folder $labels was not found; set PENN_ACTION=<Penn_Action>/labels" >&2
            exit 1
        fi
        run "$PYTHON" tools/pose_import.py --format penn_action --input "$labels" \
            --out_folder data/penn_action/frame50 --frames 50 --max_persons 1
    fi
    run "$PYTHON" main.py pretrain --config config/demo/penn_action_pretrain.yaml
    run "$PYTHON" main.py linear_evaluation --config config/demo/penn_action_linear.yaml
    run "$PYTHON" main.py knn --config config/demo/penn_action_knn.yaml
    for s in 1 2 3; do  # the random-init encoders pretraining has to beat
        run "$PYTHON" main.py linear_evaluation --config config/demo/penn_action_linear.yaml --weights "" \
            --seed "$s" --work_dir "$wd/random_init_seed$s/linear"
        run "$PYTHON" main.py knn --config config/demo/penn_action_knn.yaml --weights "" \
            --seed "$s" --work_dir "$wd/random_init_seed$s/knn"
    done
}

section="${1:-demo}"
case "$section" in
    demo) demo ;;
    nwucla_full) nwucla_full ;;
    ntu60) ntu60 ;;
    ntu120) ntu120 ;;
    stars) stars ;;
    stars_ntu60) stars_ntu60 ;;
    aimclr) method_demo aimclr pretrain_aimclr 50 linear_evaluation ;;
    crossclr) method_demo crossclr pretrain_crossclr_3views 50 linear_evaluation ;;
    caca) method_demo caca pretrain_skeleton_3views 50 linear_evaluation_3views ;;
    skelemixclr) method_demo skelemixclr pretrain_skeletonclr_multi_swapv2 64 linear_evaluation ;;
    caca_ntu60) caca_ntu60 ;;
    skelemixclr_ntu60) skelemixclr_ntu60 ;;
    asar) method_demo asar pretrain_asar 50 linear_evaluation ;;
    asar_ntu60) asar_ntu60 ;;
    hysp) method_demo hysp pretrain_hysp 50 linear_evaluation ;;
    hysp_ntu60) hysp_ntu60 ;;
    penn_action) penn_action ;;
    *)
        echo "unknown section '$section'; sections: $SECTIONS" >&2
        echo "usage: bash run.sh [section]   (default: demo)" >&2
        exit 1
        ;;
esac
