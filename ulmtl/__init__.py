"""ulmtl: ULMFiT-style transfer learning for text classification."""
import warnings

# fastai's AWD-LSTM module calls torch.jit.script at import; torch 2.14 warns about it on every run.
warnings.filterwarnings("ignore", message=".*torch.jit.script.*is deprecated", category=FutureWarning)

from ulmtl.classify import TextClassifier
from ulmtl.checkpoint import Checkpoint, CheckpointError, CheckpointRecord, load_checkpoint, save_checkpoint
from ulmtl.cli import parse_args
from ulmtl.config import (
    TRANSFORMER_CLASSIFIER, TRANSFORMER_FINETUNE, TransformerConfig, ClassifierConfig, ConfigError, FinetuneConfig, ModelConfig, PretrainConfig, PretrainRunConfig,
    RecipeConfig, TokenizerConfig, apply_overrides, load_config, save_config,
)
from ulmtl.datasets import DataError, LoadReport, load_dataset, load_files, read_files, resolve_data_dir
from ulmtl.finetune import finetune_lm
from ulmtl.pretrain import default_lm_dir, fetch_fastai_wt103, import_fastai_lm, pretrain
from ulmtl.recipe import run_cross_validation, run_recipe
from ulmtl.text import Vocab, tokenize_texts

__version__ = "0.1.0"

__all__ = [
    "TextClassifier", "finetune_lm", "TRANSFORMER_CLASSIFIER", "TRANSFORMER_FINETUNE", "TransformerConfig", "run_recipe", "run_cross_validation",
    "Checkpoint", "CheckpointError", "CheckpointRecord", "ClassifierConfig", "ConfigError", "DataError", "FinetuneConfig",
    "LoadReport", "ModelConfig", "PretrainConfig", "PretrainRunConfig", "RecipeConfig", "TokenizerConfig",
    "Vocab", "apply_overrides", "default_lm_dir", "fetch_fastai_wt103", "import_fastai_lm",
    "load_checkpoint", "load_config", "load_dataset", "load_files", "parse_args", "pretrain", "read_files",
    "resolve_data_dir", "save_checkpoint", "save_config", "tokenize_texts",
]
