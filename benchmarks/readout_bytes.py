"""Text-encoder weight bytes of the LLM-encoder pipelines, on the meta device (shapes only, no weights).

    python benchmarks/readout_bytes.py [--models flux2_dev flux2_klein z_image chroma hidream_i1 hidream_i1_t5 wan ltx2]

Per model, from its shipped public config: the dense encoder as the pipeline's checkpoint holds it,
after dropping what no text-to-image call reads (the layers after the deepest hidden state read,
an unread final norm, the vision towers of Mistral3 and Gemma-3, Mistral3's and HiDream's Llama's
LM heads: what every
pruned encoder drops for free), and after Skrr at 24/32/40% sparsity (a plan removes at least its target of the counted,
read part; the nominal target is used). Bytes are parameters x the model's dtype size; printed as
ratios of the dense encoder, with the dense size in GB.
"""
from __future__ import annotations

import argparse

import torch

TARGETS = (0.24, 0.32, 0.40)


def encoder_bytes(name: str) -> dict:
    from skrr.encoders.view import count_params, to_sub_blocks, total_params
    from skrr.models import meta_components, model_config, prepare_encoder
    from skrr.search.compute import DTYPES

    cfg = model_config(name)
    encoder = meta_components(cfg)[cfg.text_encoder]
    size = torch.finfo(DTYPES[cfg.dtype]).bits // 8
    dense = count_params(encoder)
    to_sub_blocks(prepare_encoder(encoder, cfg))
    kept = count_params(encoder)  # the view freed the unread tail (and Mistral3's vision tower and LM head)
    counted = total_params(encoder)  # what sparsity counts: the read part of the language tower
    row = {"model": name, "dense_gb": dense * size / 1e9, "read": kept / dense}
    row.update({f"skrr_{t:.2f}": (kept - t * counted) / dense for t in TARGETS})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["flux2_dev", "flux2_klein", "z_image", "chroma", "hidream_i1",
                                                         "hidream_i1_t5", "wan", "ltx2"])
    args = parser.parse_args()
    print("| model | dense encoder | after dropping the unread tail | Skrr 24% | Skrr 32% | Skrr 40% |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        r = encoder_bytes(name)
        skrr = " | ".join(f"{r[f'skrr_{t:.2f}']:.3f}" for t in TARGETS)
        print(f"| `{name}` | 1 ({r['dense_gb']:.2f} GB) | {r['read']:.3f} | {skrr} |")


if __name__ == "__main__":
    main()
