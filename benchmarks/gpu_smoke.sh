#!/usr/bin/env bash
# End-to-end check of pmv on a CUDA machine: real mp4 data through the loader (pinned memory, workers) into
# X3D-XS trained with fp16 + grad scaler, and MViTv2-S with bf16, RandAugment, repeated augmentation, mixup and
# EMA; then the multi-view test (3 crops along the long side) and a temporal-view sweep, on the GPU.
#   bash benchmarks/gpu_smoke.sh [OUT_DIR]
set -euo pipefail
out=${1:-/tmp/pmv_gpu_smoke}
py=${PYTHON:-python3}
device=${DEVICE:-cuda}  # DEVICE=cpu runs the same steps without a GPU (slowly)
rm -rf "$out" && mkdir -p "$out"
[ "$device" = cpu ] || $py -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, torch.cuda.get_device_name())"
$py -m pmv data synth "$out/data" --kinds motion,position --classes-per-kind 2 --train 24 --val 4 --test 8 --workers 8
common=(data.list_dir="$out/data" data.root="$out/data/videos" model.num_classes=4 data.num_frames=8
        transform.jitter_scales=[96,112] transform.train_crop=[128,96] test.short_side=96 test.crop=[128,96]
        train.num_workers=4 train.log_period=5)
time $py -m pmv train --config configs/demo/tiny.yaml "${common[@]}" model.name=x3d_xs train.precision=fp16 \
    train.epochs=3 train.precise_bn=true train.precise_bn_batches=4 train.output_dir="$out/x3d" --device $device --test
time $py -m pmv train --config configs/demo/tiny.yaml "${common[@]}" model.name=mvitv2_s model.drop_path=0.1 \
    train.precision=bf16 train.epochs=2 transform.num_sample=2 transform.randaugment=rand-m7-n4-mstd0.5-inc1 \
    transform.erase_prob=0.25 mixup.enable=true train.loss=soft_cross_entropy train.ema_decay=0.99 \
    train.output_dir="$out/mvit" --device $device
time $py -m pmv test --checkpoint "$out/mvit/checkpoints/best.pt" --views 2x3 --ema --device $device
time $py -m pmv test --checkpoint "$out/x3d/checkpoints/best.pt" --sweep 1,3,5 --device $device
echo "gpu smoke: OK"
