"""The package imports one way: no module imports a module of a higher layer
(docs/architecture.md). Modules of one layer may import each other."""

import ast
from pathlib import Path

import autohm

LAYERS = [  # bottom up; a name is a module or a package of autohm
    {"errors", "files", "yaml_text", "phases", "devices", "cache", "ops", "kernels"},
    {"model", "tasks"},
    {"memory", "scan_order", "masking", "peft", "config", "training", "pretrain"},
    {"deploy", "measure"},
    {"objectives"},
    {"outcome", "trial"},
    {"storage", "selection"},
    {"results"},
    {"export"},
    {"search", "runs", "ablation"},
    {"app", "bench", "cli", "__main__"},
]
LAYER = {name: level for level, names in enumerate(LAYERS) for name in names}


def imported(path: Path) -> set[str]:
    """The autohm top-level names a module imports (absolute imports)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module] + (
                [f"autohm.{a.name}" for a in node.names] if node.module == "autohm" else []
            )
        names |= {m.split(".")[1] for m in modules if m.startswith("autohm.")}
    return names


def test_every_module_has_a_layer_and_imports_nothing_above_it():
    root = Path(autohm.__file__).parent
    upward = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts == ("__init__",):
            continue
        own = parts[0]
        assert own in LAYER, f"{path}: add {own!r} to a layer in LAYERS"
        for name in imported(path) - {own}:
            if name in LAYER and LAYER[name] > LAYER[own]:
                upward.append(f"{path.relative_to(root)} imports autohm.{name}")
    assert not upward, "imports that run upward:\n" + "\n".join(upward)
