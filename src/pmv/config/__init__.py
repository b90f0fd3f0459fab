"""Typed configuration: dataclass schema, YAML recipes with ``_base_``, dotted overrides."""

from pmv.config.checks import validate
from pmv.config.load import (
    apply_overrides,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
    read_recipe,
    resolve_recipe,
    save_config,
    shipped_config,
)
from pmv.config.schema import (
    Config,
    DataConfig,
    MixupConfig,
    ModelConfig,
    OptimConfig,
    TestConfig,
    TrainConfig,
    TransformConfig,
)

__all__ = [
    "Config",
    "DataConfig",
    "MixupConfig",
    "ModelConfig",
    "OptimConfig",
    "TestConfig",
    "TrainConfig",
    "TransformConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "load_config",
    "read_recipe",
    "resolve_recipe",
    "save_config",
    "shipped_config",
    "validate",
]
