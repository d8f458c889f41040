"""Stage 1: pretrain the AWD-LSTM language model on a general-domain corpus.

    python recipes/pretrain_general.py --output runs/lm-general \
        --pretrain.time_budget_s=3600            # a folder of .txt, or --corpus=wikitext-103 online
"""
from __future__ import annotations

from ulmtl import PretrainRunConfig, default_lm_dir, parse_args, pretrain, resolve_data_dir
from ulmtl.cli import run_cli

SMOKE = ["--model.emb_size=16", "--model.hidden_size=16", "--model.n_layers=2",
         "--pretrain.max_docs=400", "--pretrain.batch_size=8", "--pretrain.bptt=20",
         "--tokenizer.max_vocab=2000", "--pretrain.epochs=1", "--pretrain.checkpoint_every_s=0"]


def main(argv=None) -> dict:
    config = PretrainRunConfig(corpus=str(resolve_data_dir() / "general_corpus"))
    config = parse_args(config, argv, SMOKE, usage=__doc__)
    output = config.output or str(default_lm_dir(config.pretrain.direction))
    return pretrain(config.corpus, output, config.pretrain, config.model, config.tokenizer)


if __name__ == "__main__":
    run_cli(main)
