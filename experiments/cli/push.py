"""skrr-push: upload a pruned folder (save_encoder's encoder/ or save_pipeline's pipeline/) to the
Hugging Face Hub.

    skrr-push runs/prune/tiny_pixart/skrr/<time>/encoder  me/pixart-sigma-t5-skrr40 [--private]

The model card is rendered again first, so its loading lines name the repository. Nothing is
uploaded from a folder that is not a pruned one, or whose modelling file is missing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from skrr.errors import InputError, MissingFile
from skrr.hub.model_card import CARD, is_hub_id, write_card
from skrr.hub.remote_code import MODULE_FILE


def check_folder(folder: Path) -> Path:
    """The folder holding the pruned encoder (the folder itself, or a pipeline's component)."""
    from skrr.hub.model_card import _encoder_dir

    if not folder.is_dir():
        raise MissingFile(f"{folder} is not a folder (give the encoder/ or pipeline/ that skrr-prune wrote)")
    if not ((folder / "plan.json").is_file() or (folder / "model_index.json").is_file()):
        raise InputError(f"{folder} is not a pruned folder: no plan.json or model_index.json "
                         "(write one with skrr-prune save_encoder=true or save_pipeline=true)")
    enc_dir, _ = _encoder_dir(folder)
    for name in ("config.json", "model.safetensors", MODULE_FILE):
        if not (enc_dir / name).is_file():
            raise InputError(f"{enc_dir} has no {name}: save it again with this skrr (skrr.save_pruned) before pushing")
    return enc_dir


def push(folder, repo_id: str, private: bool = False, revision: str | None = None,
         commit_message: str = "Upload a text encoder pruned with skrr", api=None):
    """Create the repo (if needed) and upload the folder in one commit; returns the commit info."""
    folder = Path(folder)
    if not is_hub_id(repo_id):
        raise InputError(f"repo id {repo_id!r} is not of the form <user or org>/<name>")
    check_folder(folder)
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    write_card(folder, load_from=repo_id)  # the card's loading lines now name the repository
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    return api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model", revision=revision,
                             commit_message=commit_message)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="skrr-push", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="encoder/ or pipeline/ folder written by skrr-prune")
    parser.add_argument("repo_id", help="<user or org>/<name> on the Hub")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--revision", default=None, help="branch to push to (default: main)")
    parser.add_argument("--message", default="Upload a text encoder pruned with skrr")
    args = parser.parse_args(argv)
    try:
        info = push(args.folder, args.repo_id, args.private, args.revision, args.message)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)  # as every skrr console script says it
        raise SystemExit(2) from None
    print(f"pushed {args.folder} -> {getattr(info, 'commit_url', None) or args.repo_id} ({CARD} names the repo)")


if __name__ == "__main__":
    main()
