"""The model zoo: ``create_model(name, num_classes=..., input_size=(T, H, W), **options)`` and ``list_models()``.

Registered models: ``x3d_xs``, ``x3d_s``, ``x3d_m``, ``slowfast_r50``, ``avslowfast_r50``, ``mvitv2_s``, ``uniformer_s``
(and ``uniformer_s_frame``), ``tiny``. Common options: ``dropout`` (head), ``drop_path``, ``act_checkpoint``
(recompute each block's activations in backward, ``torch.utils.checkpoint`` with ``use_reentrant=False``) and
``checkpoint_blocks`` (blocks per stage to checkpoint; empty = all). An unknown option raises ``ConfigError``.

Every model returns **logits** ``N x num_classes`` in train and eval (the evaluator applies softmax) and accepts
rectangular clips, portrait or landscape, at any size its strides allow (CNN heads pool adaptively).

Input convention (``model.input_spec``, a :class:`pmv.models.layers.InputSpec`; ``input_spec.example_inputs()``
builds valid random inputs):

* single-pathway models (``kind="clip"``): ``model(clip)``, ``clip`` ``N x 3 x T x H x W`` float.
* SlowFast (``kind="slowfast"``): ``model(clip)`` with the Fast-rate clip ``N x 3 x T x H x W``; the Slow pathway
  (``T / alpha`` frames, ``linspace(0, T - 1, T // alpha)`` as PySlowFast) is sampled inside. ``model([slow, fast])``
  works too. ``T`` must be a multiple of ``input_spec.alpha``.
* AVSlowFast (``kind="audio_visual"``): ``model(clip, audio)`` (or ``model((clip, audio))``), the clip as for
  SlowFast and ``audio`` a normalised log-mel spectrogram ``N x 1 x T_audio x F`` (128 x 80 in the seed recipe).
  ``N x 2 x T_audio x F`` carries a time-shifted negative in channel 1; in training the model then computes the
  audio-visual synchronisation losses and leaves them in ``model.aux_losses`` (a dict of scalars to add to the loss).

Weights: :func:`pmv.models.checkpoint.load_checkpoint` reads PySlowFast ``.pyth``, UniFormer ``.pth`` and pmv
checkpoints into these models (state-dict keys equal the reference layouts). Counting:
:func:`pmv.models.flops.model_flops` (GFLOPs as multiply-accumulates, like PySlowFast's zoo).
"""

from pmv.models.layers import InputSpec
from pmv.models.registry import create_model, list_models, register_model

__all__ = ["InputSpec", "create_model", "list_models", "register_model"]
