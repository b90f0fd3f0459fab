"""The model zoo: ``create_model(name, num_classes=..., input_size=(T, H, W))`` and ``list_models()``."""

from pmv.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
