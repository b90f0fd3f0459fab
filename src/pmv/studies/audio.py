"""Study 6, the audio modality: visual-only vs audio-visual models trained alike.

The visual model is the recipe's; the audio-visual one is its AV twin (``slowfast_r50`` -> ``avslowfast_r50``,
``tiny`` -> ``tiny_av``) trained with ``data.audio=true``: log-mel input (the seed's AVSlowFast recipe), A->V
fusion, DropPathway and the AV-sync loss on misaligned negatives (the engine feeds the audio and adds
``model.aux_losses``). With ``tiny_av`` an audio-only model (``modality: audio``) is trained too. Top-1 overall and,
on synthetic data, per kind of class (sound-only classes are where audio must help).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from pmv.studies.common import (
    StudyOutcome, StudyRequest, is_main, load_for_test, markdown_table, model_run, pct, synth_kinds, top1_by_kind,
    top1_of, twin_model, write_study,
)

log = logging.getLogger(__name__)

AV_MODELS = {"tiny": "tiny_av", "slowfast_r50": "avslowfast_r50"}
AUDIO_ONLY = {"tiny_av": {"modality": "audio"}}  # AV models that have an audio-only form


def av_model_name(model: str, chosen: str | None = None) -> str:
    return twin_model(model, chosen, AV_MODELS, "audio-visual", "--av-model")


def run(request: StudyRequest) -> StudyOutcome:
    from pmv.engine.evaluator import run_test
    from pmv.studies.common import setup_device
    from pmv.studies.plots import plot_bars

    started = time.perf_counter()
    out = request.out_dir
    device = setup_device(request.device)
    base = request.config
    av_name = av_model_name(base.model.name, request.options.get("av_model"))
    variants = {
        "visual": replace(base, data=replace(base.data, audio=False, audio_negatives=False)),
        # AV-sync negatives (a time-shifted spectrogram per clip) only where a sync loss uses them
        "audio_visual": replace(base, data=replace(base.data, audio=True, audio_negatives=True),
                                model=replace(base.model, name=av_name)),
    }
    if av_name in AUDIO_ONLY and request.options.get("audio_only", True):
        options = {**base.model.options, **AUDIO_ONLY[av_name]}
        variants["audio"] = replace(base, data=replace(base.data, audio=True, audio_negatives=False),
                                    model=replace(base.model, name=av_name, options=options))
    kinds = synth_kinds(base)
    top1, by_kind, trained = {}, {}, {}
    for name, config in variants.items():
        run_ = model_run(config, request.runs_dir, device=request.device)
        trained[f"audio-{name}"] = run_
        model, config, class_names = load_for_test(run_.checkpoint, device, run_.config)
        report = run_test(config, model, out / f"test_{name}", device=device, class_names=class_names)
        top1[name], by_kind[name] = top1_of(report), top1_by_kind(report, kinds)
    results = {"top1": top1, "models": {k: v.model.name for k, v in variants.items()},
               "checkpoints": {k: str(v.checkpoint) for k, v in trained.items()}}
    if kinds:
        results["top1_by_kind"] = by_kind
    figures = []
    if is_main():
        labels = {"visual": "visual only", "audio_visual": "audio-visual", "audio": "audio only"}
        kind_names = sorted({kind for row in by_kind.values() for kind in row})
        groups = {"all classes": {labels[k]: v for k, v in top1.items()}}
        for kind in kind_names:
            groups[f"{kind} classes"] = {labels[k]: by_kind[k].get(kind) for k in top1}
        figures.append(plot_bars(groups, out / "audio_top1.png", title=f"{base.model.name} vs {av_name}"))
        table = [["model", "name", "top-1 (%)", *(f"{k} classes" for k in kind_names)]] + [
            [labels[k], variants[k].model.name + (" (audio only)" if k == "audio" else ""), pct(v),
             *(pct(by_kind[k].get(kind)) for kind in kind_names)]
            for k, v in top1.items()
        ]
        report_md = f"""# Study: audio

Visual-only `{base.model.name}` and audio-visual `{av_name}` trained alike (same recipe, epochs and seed;
the audio-visual model with log-mel input, A->V fusion, DropPathway and the AV-sync loss).

{markdown_table(table)}

![audio](audio_top1.png)
"""
        write_study(out, results, report_md)
    return StudyOutcome("audio", results, out, figures, trained, time.perf_counter() - started)
