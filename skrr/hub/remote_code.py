"""`modeling_skrr.py`: the modelling file every pruned folder carries, so that
`AutoModel.from_pretrained(folder, trust_remote_code=True)` (and a diffusers pipeline folder
with `trust_remote_code=True`) loads it where skrr is not installed.

It is not a second implementation: it is cut from skrr's own source at save time (the sub-block
view in skrr/encoders/sub_blocks.py, skrr/encoders/view.py and skrr/encoders/decoder_only.py, the schedule, the cut, and the Skrr classes in
skrr/hub/pretrained.py), with the imports between skrr's modules dropped, since everything they
name is then in the one file. It imports torch, transformers and the standard library only.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import re
from importlib.metadata import version

MODULE_FILE = "modeling_skrr.py"
MODULE_NAME = MODULE_FILE[:-3]
# (module, top-level names to copy; None: all of it), in the order the file needs them
PARTS = [
    ("skrr.errors", None),
    ("skrr.encoders.sub_blocks", None),
    ("skrr.encoders.view", None),
    ("skrr.encoders.decoder_only", None),
    ("skrr.plan", ["make_schedule"]),
    ("skrr.encoders.surgery", ["cut"]),
    ("skrr.hub.pretrained", ["FORMAT", "_SkrrConfigMixin", "SkrrT5Config", "SkrrCLIPTextConfig", "SkrrGemma2Config",
                         "SkrrLlamaConfig", "SkrrQwen2Config", "SkrrQwen2_5_VLConfig", "_build_pruned",
                         "SkrrT5EncoderModel", "SkrrCLIPTextModel", "SkrrCLIPTextModelWithProjection",
                         "_DECODER_BRANCHES", "SkrrGemma2Model", "SkrrLlamaModel", "SkrrQwen2Model",
                         "SkrrQwen2_5_VLForConditionalGeneration", "SkrrQwen3Config", "SkrrMistral3Config",
                         "SkrrQwen3Model", "SkrrQwen3ForCausalLM", "SkrrMistral3ForConditionalGeneration",
                         "SkrrUMT5Config", "SkrrUMT5EncoderModel", "SkrrGemma3Config",
                         "SkrrGemma3ForConditionalGeneration", "SkrrLlamaForCausalLM"]),
]
_SKRR_IMPORT = re.compile(r"^\s*(from skrr(\.\w+)* import .*|import skrr(\.\w+)*)\s*$")


def _defined_names(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, ast.Assign):
        return {t.id for t in node.targets if isinstance(t, ast.Name)}
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return {node.target.id}
    return set()


def _is_skrr_import(node: ast.stmt) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.module == "__future__" or (node.module or "").split(".")[0] == "skrr"
    return isinstance(node, ast.Import) and any(a.name.split(".")[0] == "skrr" for a in node.names)


def _bindings(node: ast.stmt) -> list[tuple[str | None, str, str | None]]:
    """(from-module or None, imported name, alias) of an import statement."""
    if isinstance(node, ast.ImportFrom):
        return [(node.module, a.name, a.asname) for a in node.names]
    return [(None, a.name, a.asname) for a in node.names]


def _import_lines(bindings, code: str) -> list[str]:
    """The imports `code` uses, one statement per module."""
    used = {n.id for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Name)}
    by_module: dict[str, list[str]] = {}
    lines = []
    for module, name, alias in bindings:
        bound = alias or name.split(".")[0]
        if bound not in used:
            continue
        text = name if alias is None else f"{name} as {alias}"
        if module is None:
            line = f"import {text}"
            if line not in lines:
                lines.append(line)
        elif text not in by_module.setdefault(module, []):
            by_module[module].append(text)
    return lines + [f"from {m} import {', '.join(sorted(n))}" for m, n in by_module.items() if n]


def _segment(lines: list[str], node: ast.stmt) -> str:
    start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    body = lines[start - 1:node.end_lineno]
    return "\n".join(line for line in body if not _SKRR_IMPORT.match(line))  # same-file names now


def _cut(module_name: str, names: list[str] | None) -> tuple[list, list[str]]:
    """(import bindings, definitions) of `module_name`, without its docstring and skrr imports."""
    source = inspect.getsource(importlib.import_module(module_name))
    lines = source.splitlines()
    imports, defs, found = [], [], set()
    for i, node in enumerate(ast.parse(source).body):
        if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the module docstring
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if not _is_skrr_import(node):
                imports += _bindings(node)
            continue
        defined = _defined_names(node)
        if names is None or defined & set(names):
            defs.append(_segment(lines, node))
            found |= defined
    missing = set(names or ()) - found
    if missing:
        raise RuntimeError(f"skrr.hub.remote_code: {module_name} no longer defines {sorted(missing)}; update PARTS")
    return imports, defs


def modeling_source() -> str:
    """The text of modeling_skrr.py for the installed skrr."""
    __version__ = version("skrr")  # the installed distribution's (not skrr.__version__: no import back up)

    imports, blocks = [], []
    for module_name, names in PARTS:
        mod_imports, defs = _cut(module_name, names)
        imports += mod_imports
        blocks.append(f"# --- from {module_name} " + "-" * max(0, 80 - len(module_name) - 12) + "\n\n"
                      + "\n\n\n".join(defs))
    header = (f'"""Pruned text encoders of skrr {__version__} (Skip and Re-use, ICML 2025), as transformers models.\n\n'
              "Written by skrr.save_pruned from skrr's own source (skrr/hub/remote_code.py); load the folder with\n"
              "`transformers.AutoModel.from_pretrained(folder, trust_remote_code=True)`. With skrr installed,\n"
              'the same classes are registered and no remote code is needed."""\n')
    body = "\n\n\n".join(blocks) + "\n"
    return header + "from __future__ import annotations\n\n" + "\n".join(_import_lines(imports, body)) + "\n\n\n" + body


def auto_map(model_class: str, config_class: str) -> dict:
    return {"AutoConfig": f"{MODULE_NAME}.{config_class}", "AutoModel": f"{MODULE_NAME}.{model_class}"}
