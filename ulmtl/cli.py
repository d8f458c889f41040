"""Command-line handling shared by the recipes: ``--section.key=value`` overrides and flags."""
from __future__ import annotations

import shlex
import sys
from contextvars import ContextVar

from ulmtl.backbones import check_run_settings, get_backbone, resolve_backbone
from ulmtl.config import ConfigError, apply_overrides, backbone_defaults

FLAG_KEYS = {"--smoke": "smoke", "--skip-empty": "skip_empty"}
VALUE_KEYS = {"--output": "output", "--pretrained": "pretrained", "--data-dir": "data_dir",
              "--train": "train_file", "--test": "test_file", "--text-column": "text_column",
              "--label-column": "label_column", "--corpus": "corpus", "--folds": "folds",
              "--encoding": "encoding", "--label-separator": "label_separator",
              "--label-columns": "label_columns"}

BACKBONE_CHOICE = ("--backbone", "--pretrained", "--smoke")  # the overrides that choose a recipe's backbone

# The command line of the recipe or ``ulmtl`` command running now (set by run_cli), for model cards.
_COMMAND_LINE: ContextVar[str] = ContextVar("command_line", default="")


def command_line() -> str:
    """The command that is running, as typed (``run_cli`` records it); "Python API" outside one."""
    return _COMMAND_LINE.get() or "Python API"


def normalize_argv(argv: list[str]) -> list[str]:
    """Turn ``--flag`` and ``--name VALUE`` forms into ``--key=value`` overrides."""
    out, i = [], 0
    while i < len(argv):
        item = argv[i]
        name = item.split("=", 1)[0]
        if item in FLAG_KEYS:
            out.append(f"--{FLAG_KEYS[item]}=true")
        elif name in VALUE_KEYS:
            if "=" in item:
                value = item.split("=", 1)[1]
            else:
                if i + 1 >= len(argv):
                    raise ConfigError(f"{item} needs a value")
                i += 1
                value = argv[i]
            out.append(f"--{VALUE_KEYS[name]}={value}")
        else:
            out.append(item)
        i += 1
    return out


def parse_args(config, argv: list[str] | None, smoke_overrides: list[str] = (), usage: str = ""):
    """The recipe's config with the command line applied; ``--smoke`` first applies the smoke settings.

    On a bad argument, prints the error and exits with status 2.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(usage or "usage: recipe [--output DIR] [--smoke] [--section.key=value ...]")
        raise SystemExit(0)
    try:
        overrides = normalize_argv(argv)
        # Any spelling of a true value (--smoke, --smoke=1, --smoke=yes); the last one wins.
        smoke = [item for item in overrides if item.split("=", 1)[0] == "--smoke"]
        smoke_settings = list(smoke_overrides) if smoke and apply_overrides(config, smoke[-1:]).smoke else []
        if hasattr(config, "backbone"):
            # The backbone's own defaults first, then --smoke's (those it can act on), then the user's.
            # The backbone comes from the settings that choose it alone: the user's others may fit its
            # defaults only (a transformer's two-stage plan).
            chooses = [item for item in overrides if item.split("=", 1)[0] in BACKBONE_CHOICE]
            chosen = apply_overrides(config, chooses)
            backbone = resolve_backbone(chosen.backbone, chosen.pretrained, chosen.smoke)
            smoke_settings = [item for item in smoke_settings if get_backbone(backbone).acts_on(item)]
            overrides = backbone_defaults(backbone) + smoke_settings + overrides + [f"--backbone={backbone}"]
        else:
            overrides = smoke_settings + overrides
        resolved = apply_overrides(config, overrides)
        if hasattr(resolved, "finetune") and hasattr(resolved, "classifier"):
            _check_stage_seeds(resolved, overrides)
            check_run_settings(resolved)
        return resolved
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def _check_stage_seeds(config, overrides: list[str]) -> None:
    """A recipe runs stages 2 and 3 with its ``--seed``: a different ``--finetune.seed`` or
    ``--classifier.seed`` could not act, so it is refused."""
    for section in ("finetune", "classifier"):
        given = [item for item in overrides if item.split("=", 1)[0] == f"--{section}.seed"]
        if given and getattr(config, section).seed != config.seed:
            raise ConfigError(f"{section}.seed={getattr(config, section).seed}: a recipe runs every stage with "
                              f"the run's seed (now {config.seed}); set --seed instead")


def run_cli(entry, command: str = "") -> None:
    """Run a recipe's ``main``; bad input ends with its message on stderr and exit status 2,
    not a traceback. ``command`` (default: ``python`` and ``sys.argv``) is what model cards saved
    meanwhile record as the command that made them."""
    from ulmtl.checkpoint import CheckpointError
    from ulmtl.datasets import DataError
    from ulmtl.training import NonFiniteLoss
    token = _COMMAND_LINE.set(command or shlex.join(["python", *sys.argv]))
    try:
        entry()
    except (ConfigError, DataError, CheckpointError, NonFiniteLoss) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        _COMMAND_LINE.reset(token)
