"""Typed configuration schema.

One dataclass per part; functions take the part they need (``TransformConfig``, ``OptimConfig``...), not the
whole tree. Sizes are written H x W (height first), as the seed does: a portrait crop is ``[256, 192]``.
Each field's comment names the seed (PySlowFast) option it replaces; ``docs/seed-options.md`` has the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class DataConfig:
    root: str = ""  # DATA.PATH_PREFIX: folder the video paths of the lists are relative to
    list_dir: str = ""  # DATA.PATH_TO_DATA_DIR: folder of the split lists
    list_template: str = "{split}{subset}.csv"  # DATA.LABEL_PATH_TEMPLATE ("{}{}.csv")
    subset: str = ""  # DATA.PM_SUBSET, e.g. "_pmv400" -> train_pmv400.csv
    class_names: str = ""  # class_name_mapping.csv; "" = <list_dir>/class_name_mapping.csv
    separator: str = ","  # DATA.PATH_LABEL_SEPARATOR
    num_frames: int = 16  # DATA.NUM_FRAMES
    sampling_rate: int = 4  # DATA.SAMPLING_RATE (stride between sampled frames)
    target_fps: Optional[float] = None  # DATA.TARGET_FPS; None = the file's native rate
    offset_sampling: bool = True  # DATA.USE_OFFSET_SAMPLING: test clip k starts at k*floor(delta/(K-1))
    decode_short_side: int = 0  # resize in the decoder to this short side (0 = full resolution)
    mean: list[float] = field(default_factory=lambda: [0.45, 0.45, 0.45])  # DATA.MEAN
    std: list[float] = field(default_factory=lambda: [0.225, 0.225, 0.225])  # DATA.STD
    audio: bool = False  # also return a log-mel spectrogram of the clip (AVSlowFast)
    audio_sample_rate: int = 16000  # DATA.AUDIO_SAMPLE_RATE
    audio_mel_bins: int = 80  # DATA.AUDIO_MEL_NUM
    audio_frames: int = 128  # DATA.AUDIO_FRAME_NUM (spectrogram rows per clip)
    audio_win_ms: float = 32.0  # DATA.AUDIO_WIN_SZ
    audio_step_ms: float = 16.0  # DATA.AUDIO_STEP_SZ
    logmel_mean: float = -7.03  # DATA.LOGMEL_MEAN
    # AV-sync negatives (training): a second spectrogram from the same video at least the gap away.
    audio_negatives: bool = False  # DATA.GET_MISALIGNED_AUDIO
    audio_misaligned_gap: int = 32  # DATA.AUDIO_MISALIGNED_GAP (spectrogram rows, 32 x 16 ms = 0.5 s)
    easy_negative_ratio: float = 0.75  # DATA.EASY_NEG_RATIO: share of negatives taken from another video
    mix_negative_epoch: int = 96  # DATA.MIX_NEG_EPOCH: before it every negative is another video's audio
    logmel_std: float = 4.66  # DATA.LOGMEL_STD


@dataclass
class TransformConfig:
    # Short-side scale jitter [min, max] (DATA.TRAIN_JITTER_SCALES), then a crop of train_crop (H, W).
    jitter_scales: list[int] = field(default_factory=lambda: [256, 320])
    inverse_uniform: bool = False  # DATA.INV_UNIFORM_SAMPLE
    auto_adjust: bool = False  # DATA.TRAIN_JITTER_SCALES_AUTO_ADJUST: raise min so the rect crop fits
    train_crop: list[int] = field(default_factory=lambda: [224, 224])  # DATA.TRAIN_CROP_SIZE(_RECT), H x W
    # Inception-style random resized crop; both empty = the short-side jitter path ("shorter" recipes).
    scale_relative: list[float] = field(default_factory=list)  # DATA.TRAIN_JITTER_SCALES_RELATIVE
    aspect_relative: list[float] = field(default_factory=list)  # DATA.TRAIN_JITTER_ASPECT_RELATIVE
    random_flip: bool = True  # DATA.RANDOM_FLIP
    interpolation: str = "bilinear"  # resize interpolation for crops: bilinear | bicubic
    randaugment: str = ""  # AUG.AA_TYPE when AUG.ENABLE, e.g. "rand-m7-n4-mstd0.5-inc1"; "" = off
    randaugment_interpolation: str = "bicubic"  # AUG.INTERPOLATION: RandAugment geometric ops, bilinear | bicubic
    erase_prob: float = 0.0  # AUG.RE_PROB
    erase_mode: str = "pixel"  # AUG.RE_MODE
    erase_count: int = 1  # AUG.RE_COUNT
    num_sample: int = 1  # AUG.NUM_SAMPLE: augmented clips per decoded video (repeated augmentation)


@dataclass
class MixupConfig:
    enable: bool = False  # MIXUP.ENABLE
    alpha: float = 0.8  # MIXUP.ALPHA
    cutmix_alpha: float = 1.0  # MIXUP.CUTMIX_ALPHA
    prob: float = 1.0  # MIXUP.PROB
    switch_prob: float = 0.5  # MIXUP.SWITCH_PROB
    label_smoothing: float = 0.1  # MIXUP.LABEL_SMOOTH_VALUE


@dataclass
class ModelConfig:
    name: str = "tiny"  # MODEL.MODEL_NAME / MODEL.ARCH: a registered pmv model
    num_classes: int = 400  # MODEL.NUM_CLASSES
    # Builder options; None (unset) keeps the registered builder's own default, the published value.
    dropout: Optional[float] = None  # MODEL.DROPOUT_RATE (head)
    drop_path: Optional[float] = None  # MVIT.DROPPATH_RATE / UNIFORMER.DROP_DEPTH_RATE
    act_checkpoint: Optional[bool] = None  # MODEL.ACT_CHECKPOINT / MODEL.USE_CHECKPOINT
    checkpoint_blocks: Optional[list[int]] = None  # MODEL.CHECKPOINT_NUM (per stage); [] = all
    options: dict[str, Any] = field(default_factory=dict)  # any other builder option, e.g. {attention_impl: math}
    pretrained: str = ""  # TRAIN.CHECKPOINT_FILE_PATH: weights to start from (.pyth, .pth or pmv)


@dataclass
class OptimConfig:
    method: str = "adamw"  # SOLVER.OPTIMIZING_METHOD: adamw | sgd
    base_lr: float = 1e-3  # SOLVER.BASE_LR (before scaling)
    # SOLVER.BASE_LR_SCALE_NUM_SHARDS(_BY_SQRT): none | nodes | sqrt_nodes | batch (linear in global batch)
    lr_scaling: str = "none"
    reference_batch: int = 256  # global batch that base_lr is given for, when lr_scaling = batch
    warmup_epochs: float = 0.0  # SOLVER.WARMUP_EPOCHS
    warmup_start_lr: float = 0.0  # SOLVER.WARMUP_START_LR
    end_lr: float = 0.0  # SOLVER.COSINE_END_LR
    cosine_after_warmup: bool = True  # SOLVER.COSINE_AFTER_WARMUP
    weight_decay: float = 0.05  # SOLVER.WEIGHT_DECAY
    zero_wd_1d: bool = True  # SOLVER.ZERO_WD_1D_PARAM: no decay on biases, norms and other 1-D parameters
    norm_weight_decay: float = 0.0  # BN.WEIGHT_DECAY
    momentum: float = 0.9  # SOLVER.MOMENTUM
    nesterov: bool = True  # SOLVER.NESTEROV
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    clip_grad_norm: float = 0.0  # SOLVER.CLIP_GRAD_L2NORM / CLIP_GRADIENT; 0 = off


@dataclass
class TrainConfig:
    epochs: int = 10  # SOLVER.MAX_EPOCH
    batch_size: int = 8  # TRAIN.BATCH_SIZE, per process (the seed's is per node)
    grad_accum: int = 1  # micro-batches per optimizer step
    precision: str = "fp32"  # TRAIN.MIXED_PRECISION: fp32 | bf16 | fp16
    loss: str = "cross_entropy"  # MODEL.LOSS_FUNC: cross_entropy | soft_cross_entropy
    label_smoothing: float = 0.0  # without mixup
    ema_decay: float = 0.0  # model EMA; 0 = off
    precise_bn: bool = False  # BN.USE_PRECISE_STATS
    precise_bn_batches: int = 200  # BN.NUM_BATCHES_PRECISE
    eval_period: int = 1  # TRAIN.EVAL_PERIOD (epochs)
    checkpoint_period: int = 1  # TRAIN.CHECKPOINT_PERIOD (epochs)
    checkpoint_steps: int = 0  # (no seed option) also checkpoint every N optimizer steps inside an epoch; 0 = off
    keep_last: int = 3  # checkpoints kept besides the best
    auto_resume: bool = True  # TRAIN.AUTO_RESUME
    output_dir: str = "runs/default"  # OUTPUT_DIR
    seed: int = 0  # RNG_SEED
    num_workers: int = 2  # DATA_LOADER.NUM_WORKERS (per process)
    log_period: int = 10  # LOG_PERIOD (steps)
    deterministic: bool = False  # torch deterministic algorithms (for exact resume checks)
    tensorboard: bool = True  # TENSORBOARD.ENABLE


@dataclass
class TestConfig:
    num_temporal_views: int = 1  # TEST.NUM_ENSEMBLE_VIEWS
    num_spatial_views: int = 1  # TEST.NUM_SPATIAL_CROPS: 1 or 3 (along the long side)
    spatial_index: int = 1  # TEST.SPATIAL_SAMPLE_INDEX when one spatial view: 0 top/left, 1 centre, 2 bottom/right
    short_side: int = 256  # test resize (the seed's TRAIN_JITTER_SCALES[0] or TEST_CROP_SIZE)
    crop: list[int] = field(default_factory=lambda: [224, 224])  # DATA.TEST_CROP_SIZE(_RECT), H x W
    auto_adjust: bool = False  # DATA.TEST_JITTER_SCALES_AUTO_ADJUST
    aggregation: str = "softmax_sum"  # DATA.ENSEMBLE_METHOD on softmax scores: softmax_sum | logits_sum | softmax_max
    batch_size: int = 8  # TEST.BATCH_SIZE (per process)
    split: str = "test"


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    transform: TransformConfig = field(default_factory=TransformConfig)
    mixup: MixupConfig = field(default_factory=MixupConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
