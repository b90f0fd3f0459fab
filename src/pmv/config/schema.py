"""Typed configuration schema.

One dataclass per part; functions take the part they need (``TransformConfig``, ``OptimConfig``...), not the
whole tree. Sizes are written H x W (height first), as the seed does: a portrait crop is ``[256, 192]``.
Each field carries its help text, the seed (PySlowFast) option it replaces and the check its value must pass
(``pmv config show`` prints the first two; ``docs/seed-options.md`` has the table). Values are checked once, when
the config is built (:func:`pmv.config.config_from_dict`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from pmv.config.checks import (
    above,
    at_least,
    between,
    each,
    min_max,
    not_empty,
    one_of,
    opt,
    size_hw,
)

INTERPOLATIONS = ("bilinear", "bicubic")
ERASE_MODES = ("pixel", "rand", "const")
OPTIM_METHODS = ("adamw", "sgd")
LR_SCALINGS = ("none", "nodes", "sqrt_nodes", "batch")
PRECISIONS = ("fp32", "bf16", "fp16")
LOSSES = ("cross_entropy", "soft_cross_entropy")
AGGREGATIONS = ("softmax_sum", "logits_sum", "softmax_max")

_fraction = between(0.0, 1.0)
_below_one = between(0.0, 1.0, high_open=True)


@dataclass
class DataConfig:
    root: str = opt("", "folder the video paths of the lists are relative to", seed="DATA.PATH_PREFIX")
    list_dir: str = opt("", "folder of the split lists", seed="DATA.PATH_TO_DATA_DIR")
    list_template: str = opt("{split}{subset}.csv", "list file name, with {split} and {subset} filled in",
                             seed="DATA.LABEL_PATH_TEMPLATE", check=not_empty())
    subset: str = opt("", 'list name suffix, e.g. "_pmv400" -> train_pmv400.csv', seed="DATA.PM_SUBSET")
    class_names: str = opt("", 'class_name_mapping.csv; "" = <list_dir>/class_name_mapping.csv')
    separator: str = opt(",", "separator of path and label in the lists", seed="DATA.PATH_LABEL_SEPARATOR",
                         check=not_empty())
    num_frames: int = opt(16, "frames per clip", seed="DATA.NUM_FRAMES", check=at_least(1))
    sampling_rate: int = opt(4, "stride between sampled frames", seed="DATA.SAMPLING_RATE", check=at_least(1))
    target_fps: Optional[float] = opt(None, "resample to this frame rate; null = the file's native rate",
                                      seed="DATA.TARGET_FPS", check=above(0))
    offset_sampling: bool = opt(True, "test clip k starts at k*floor(delta/(K-1))", seed="DATA.USE_OFFSET_SAMPLING")
    decode_short_side: int = opt(0, "resize in the decoder to this short side (0 = full resolution)",
                                 check=at_least(0))
    mean: list[float] = opt([0.45, 0.45, 0.45], "per-channel mean (R, G, B)", seed="DATA.MEAN",
                            check=each(between(0.0, 1.0), 3))
    std: list[float] = opt([0.225, 0.225, 0.225], "per-channel std (R, G, B)", seed="DATA.STD",
                           check=each(above(0), 3))
    audio: bool = opt(False, "also return a log-mel spectrogram of the clip (AVSlowFast)", seed="DATA.USE_AUDIO")
    audio_sample_rate: int = opt(16000, "audio resampling rate (Hz)", seed="DATA.AUDIO_SAMPLE_RATE",
                                 check=at_least(1))
    audio_mel_bins: int = opt(80, "mel bins", seed="DATA.AUDIO_MEL_NUM", check=at_least(1))
    audio_frames: int = opt(128, "spectrogram rows per clip", seed="DATA.AUDIO_FRAME_NUM", check=at_least(1))
    audio_win_ms: float = opt(32.0, "STFT window (ms)", seed="DATA.AUDIO_WIN_SZ", check=above(0))
    audio_step_ms: float = opt(16.0, "STFT hop (ms)", seed="DATA.AUDIO_STEP_SZ", check=above(0))
    logmel_mean: float = opt(-7.03, "log-mel normalisation mean", seed="DATA.LOGMEL_MEAN")
    logmel_std: float = opt(4.66, "log-mel normalisation std", seed="DATA.LOGMEL_STD", check=above(0))
    # AV-sync negatives (training): a second spectrogram from the same video at least the gap away.
    audio_negatives: bool = opt(False, "add a time-shifted negative spectrogram per clip (the AV-sync loss)",
                                seed="DATA.GET_MISALIGNED_AUDIO")
    audio_misaligned_gap: int = opt(32, "min distance of a negative, in spectrogram rows (32 x 16 ms = 0.5 s)",
                                    seed="DATA.AUDIO_MISALIGNED_GAP", check=at_least(0))
    easy_negative_ratio: float = opt(0.75, "share of negatives replaced by another video's audio",
                                     seed="DATA.EASY_NEG_RATIO", check=between(0.0, 1.0))
    mix_negative_epoch: int = opt(96, "before this epoch every negative is another video's audio",
                                  seed="DATA.MIX_NEG_EPOCH", check=at_least(0))


@dataclass
class TransformConfig:
    jitter_scales: list[int] = opt([256, 320], "short-side scale jitter [min, max], then a crop of train_crop",
                                   seed="DATA.TRAIN_JITTER_SCALES", check=min_max())
    inverse_uniform: bool = opt(False, "draw the scale uniformly in 1/size", seed="DATA.INV_UNIFORM_SAMPLE")
    auto_adjust: bool = opt(False, "raise the jitter minimum so the rectangular crop fits",
                            seed="DATA.TRAIN_JITTER_SCALES_AUTO_ADJUST")
    train_crop: list[int] = opt([224, 224], "training crop [H, W]", seed="DATA.TRAIN_CROP_SIZE(_RECT)",
                                check=size_hw())
    # Inception-style random resized crop; both empty = the short-side jitter path ("shorter" recipes).
    scale_relative: list[float] = opt([], "Inception crop area [min, max]; [] = short-side jitter",
                                      seed="DATA.TRAIN_JITTER_SCALES_RELATIVE", check=min_max(allow_empty=True))
    aspect_relative: list[float] = opt([], "Inception crop aspect [min, max]", seed="DATA.TRAIN_JITTER_ASPECT_RELATIVE",
                                       check=min_max(allow_empty=True))
    random_flip: bool = opt(True, "random horizontal flip", seed="DATA.RANDOM_FLIP")
    interpolation: str = opt("bilinear", "resize interpolation of the crops", check=one_of(*INTERPOLATIONS))
    randaugment: str = opt("", 'RandAugment policy, e.g. "rand-m7-n4-mstd0.5-inc1"; "" = off',
                           seed="AUG.AA_TYPE (when AUG.ENABLE)")
    randaugment_interpolation: str = opt("bicubic", "interpolation of RandAugment's geometric ops",
                                         seed="AUG.INTERPOLATION", check=one_of(*INTERPOLATIONS))
    erase_prob: float = opt(0.0, "random erasing probability", seed="AUG.RE_PROB", check=_fraction)
    erase_mode: str = opt("pixel", "random erasing fill", seed="AUG.RE_MODE", check=one_of(*ERASE_MODES))
    erase_count: int = opt(1, "random erasing boxes", seed="AUG.RE_COUNT", check=at_least(1))
    num_sample: int = opt(1, "augmented clips per decoded video (repeated augmentation)", seed="AUG.NUM_SAMPLE",
                          check=at_least(1))


@dataclass
class MixupConfig:
    enable: bool = opt(False, "mixup / cutmix on training batches", seed="MIXUP.ENABLE")
    alpha: float = opt(0.8, "mixup Beta(alpha, alpha); 0 = off", seed="MIXUP.ALPHA", check=at_least(0))
    cutmix_alpha: float = opt(1.0, "cutmix Beta(alpha, alpha); 0 = off", seed="MIXUP.CUTMIX_ALPHA", check=at_least(0))
    prob: float = opt(1.0, "probability of mixing a batch", seed="MIXUP.PROB", check=_fraction)
    switch_prob: float = opt(0.5, "probability of cutmix instead of mixup", seed="MIXUP.SWITCH_PROB", check=_fraction)
    label_smoothing: float = opt(0.1, "label smoothing of the mixed targets", seed="MIXUP.LABEL_SMOOTH_VALUE",
                                 check=_below_one)


@dataclass
class ModelConfig:
    name: str = opt("tiny", "a registered pmv model (pmv models list)", seed="MODEL.MODEL_NAME / MODEL.ARCH",
                    check=not_empty())
    num_classes: int = opt(400, "number of classes", seed="MODEL.NUM_CLASSES", check=at_least(1))
    # Builder options; None (unset) keeps the registered builder's own default, the published value.
    dropout: Optional[float] = opt(None, "head dropout; null = the model's default", seed="MODEL.DROPOUT_RATE",
                                   check=_below_one)
    drop_path: Optional[float] = opt(None, "stochastic depth rate; null = the model's default",
                                     seed="MVIT.DROPPATH_RATE / UNIFORMER.DROP_DEPTH_RATE", check=_below_one)
    act_checkpoint: Optional[bool] = opt(None, "activation checkpointing; null = the model's default",
                                         seed="MODEL.ACT_CHECKPOINT / MODEL.USE_CHECKPOINT")
    checkpoint_blocks: Optional[list[int]] = opt(None, "blocks per stage to checkpoint; [] = all",
                                                 seed="MODEL.CHECKPOINT_NUM", check=each(at_least(0)))
    options: dict[str, Any] = opt({}, "any other builder option, e.g. {attention_impl: math}")
    pretrained: str = opt("", "weights to start from (.pyth, .pth or pmv)", seed="TRAIN.CHECKPOINT_FILE_PATH")


@dataclass
class OptimConfig:
    method: str = opt("adamw", "optimizer", seed="SOLVER.OPTIMIZING_METHOD", check=one_of(*OPTIM_METHODS))
    base_lr: float = opt(1e-3, "learning rate before scaling", seed="SOLVER.BASE_LR", check=at_least(0))
    lr_scaling: str = opt("none", "scale the LRs by: none | nodes | sqrt_nodes | batch (global batch / reference_batch)",
                          seed="SOLVER.BASE_LR_SCALE_NUM_SHARDS(_BY_SQRT)", check=one_of(*LR_SCALINGS))
    reference_batch: int = opt(256, "global batch that base_lr is given for, when lr_scaling = batch",
                               check=at_least(1))
    warmup_epochs: float = opt(0.0, "linear warm-up length (epochs)", seed="SOLVER.WARMUP_EPOCHS", check=at_least(0))
    warmup_start_lr: float = opt(0.0, "LR at the start of warm-up", seed="SOLVER.WARMUP_START_LR", check=at_least(0))
    end_lr: float = opt(0.0, "LR at the end of the cosine", seed="SOLVER.COSINE_END_LR", check=at_least(0))
    cosine_after_warmup: bool = opt(True, "the cosine starts after warm-up", seed="SOLVER.COSINE_AFTER_WARMUP")
    weight_decay: float = opt(0.05, "weight decay", seed="SOLVER.WEIGHT_DECAY", check=at_least(0))
    zero_wd_1d: bool = opt(True, "no decay on biases, norms and other 1-D parameters", seed="SOLVER.ZERO_WD_1D_PARAM")
    norm_weight_decay: float = opt(0.0, "weight decay of normalization layers", seed="BN.WEIGHT_DECAY",
                                   check=at_least(0))
    momentum: float = opt(0.9, "SGD momentum", seed="SOLVER.MOMENTUM", check=_fraction)
    nesterov: bool = opt(True, "SGD Nesterov momentum", seed="SOLVER.NESTEROV")
    betas: list[float] = opt([0.9, 0.999], "AdamW betas", check=each(_below_one, 2))
    clip_grad_norm: float = opt(0.0, "gradient L2-norm clipping; 0 = off",
                                seed="SOLVER.CLIP_GRAD_L2NORM / SOLVER.CLIP_GRADIENT", check=at_least(0))


@dataclass
class TrainConfig:
    epochs: int = opt(10, "training epochs", seed="SOLVER.MAX_EPOCH", check=at_least(1))
    batch_size: int = opt(8, "clips per step, per process (the seed's is per node)", seed="TRAIN.BATCH_SIZE",
                          check=at_least(1))
    grad_accum: int = opt(1, "micro-batches per optimizer step", check=at_least(1))
    precision: str = opt("fp32", "autocast precision (fp16 needs a GPU)", seed="TRAIN.MIXED_PRECISION",
                         check=one_of(*PRECISIONS))
    loss: str = opt("cross_entropy", "training loss", seed="MODEL.LOSS_FUNC", check=one_of(*LOSSES))
    label_smoothing: float = opt(0.0, "label smoothing without mixup", check=_below_one)
    ema_decay: float = opt(0.0, "model EMA decay; 0 = off", check=_below_one)
    precise_bn: bool = opt(False, "recompute BatchNorm statistics before each evaluation",
                           seed="BN.USE_PRECISE_STATS")
    precise_bn_batches: int = opt(200, "batches for precise BN", seed="BN.NUM_BATCHES_PRECISE", check=at_least(1))
    eval_period: int = opt(1, "validate every N epochs", seed="TRAIN.EVAL_PERIOD", check=at_least(1))
    checkpoint_period: int = opt(1, "checkpoint every N epochs", seed="TRAIN.CHECKPOINT_PERIOD", check=at_least(1))
    checkpoint_steps: int = opt(0, "also checkpoint every N optimizer steps inside an epoch; 0 = off",
                                check=at_least(0))
    keep_last: int = opt(3, "checkpoints kept besides the best; 0 = all", check=at_least(0))
    auto_resume: bool = opt(True, "resume from the newest valid checkpoint in output_dir", seed="TRAIN.AUTO_RESUME")
    output_dir: str = opt("runs/default", "run folder (checkpoints, logs, config)", seed="OUTPUT_DIR",
                          check=not_empty())
    seed: int = opt(0, "random seed", seed="RNG_SEED")
    num_workers: int = opt(2, "data-loader worker processes, per process", seed="DATA_LOADER.NUM_WORKERS",
                           check=at_least(0))
    log_period: int = opt(10, "log every N steps", seed="LOG_PERIOD", check=at_least(1))
    deterministic: bool = opt(False, "torch deterministic algorithms (for exact resume checks)")
    tensorboard: bool = opt(True, "TensorBoard scalars (pip install 'pmv[tensorboard]')", seed="TENSORBOARD.ENABLE")


@dataclass
class TestConfig:
    num_temporal_views: int = opt(1, "clips per video", seed="TEST.NUM_ENSEMBLE_VIEWS", check=at_least(1))
    num_spatial_views: int = opt(1, "crops per clip: 1, or 3 along the long side", seed="TEST.NUM_SPATIAL_CROPS",
                                 check=one_of(1, 3, why="3 = crops along the long side"))
    spatial_index: int = opt(1, "crop position with one spatial view: 0 top/left, 1 centre, 2 bottom/right",
                             seed="TEST.SPATIAL_SAMPLE_INDEX",
                             check=one_of(0, 1, 2, why="top/left, centre, bottom/right"))
    short_side: int = opt(256, "test resize of the short side (the seed's TRAIN_JITTER_SCALES[0] or TEST_CROP_SIZE)",
                          check=at_least(1))
    crop: list[int] = opt([224, 224], "test crop [H, W]", seed="DATA.TEST_CROP_SIZE(_RECT)", check=size_hw())
    auto_adjust: bool = opt(False, "raise the short side so the rectangular crop fits",
                            seed="DATA.TEST_JITTER_SCALES_AUTO_ADJUST")
    aggregation: str = opt("softmax_sum", "how view scores combine per video", seed="DATA.ENSEMBLE_METHOD",
                           check=one_of(*AGGREGATIONS))
    batch_size: int = opt(8, "clips per batch, per process", seed="TEST.BATCH_SIZE", check=at_least(1))
    split: str = opt("test", "which list to test: train, val or test", check=not_empty())


@dataclass
class Config:
    data: DataConfig = opt(DataConfig(), "videos, lists and clip sampling")
    transform: TransformConfig = opt(TransformConfig(), "crops and augmentation")
    mixup: MixupConfig = opt(MixupConfig(), "mixup and cutmix")
    model: ModelConfig = opt(ModelConfig(), "network and its options")
    optim: OptimConfig = opt(OptimConfig(), "optimizer and learning-rate schedule")
    train: TrainConfig = opt(TrainConfig(), "the training run")
    test: TestConfig = opt(TestConfig(), "multi-view test")
