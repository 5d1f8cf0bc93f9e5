"""Generate the challenge's train_gpt.py from pgolf's own modules.

The script embeds, verbatim, every module of the import closure of its
program (`pipeline.export.closure`, from `pipeline.export.run`), each as a
raw string, and runs them as a private package ``_pgolf`` through a small
import hook: every module keeps its own namespace, so nothing is renamed and
the code that runs is byte for byte the code the pipeline runs (the only edit
is ``from pipeline...`` -> ``from _pgolf...`` in import statements).  That is
why this approach rather than flattening the modules into one namespace:
flattening would have to rename colliding private names and rewrite
``module.attr`` references, and any slip would change the program.

The configuration is baked in as ``PARAMS``, a literal of `Params.to_dict()`
that the script turns back into the typed, validated `Params`.  Generation is
deterministic (no dates, no commit), so the quantize stage can generate the
script in memory to count its bytes (`exported_code_bytes`), and that count
equals the size of the file `pgolf export` writes.

``compress=True`` wraps the script in a two-line self-extractor around its
lzma-compressed, base85-encoded source, as later records do.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import lzma
import pprint
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pipeline
from pipeline.config import Params
from pipeline.errors import PgolfError
from pipeline.export.closure import DEFAULT_ROOTS, _SOURCE_ROOT, code_files

PRIVATE_PACKAGE = "_pgolf"
SCRIPT_NAME = "train_gpt.py"
# Top-level modules the script must never import when its modules are loaded (SPEC of issue 14:
# the challenge image has torch, numpy and sentencepiece, and pgolf's CLI stack is not part of it).
FORBIDDEN_IMPORTS = ("pipeline", "stages", "yaml", "typer", "dvc", "tqdm", "huggingface_hub", "scipy")
# What the challenge's image provides already (its requirements.txt); anything else is listed.
CHALLENGE_IMAGE = ("torch", "numpy", "sentencepiece")


class ExportError(PgolfError):
    """pgolf's modules cannot be turned into a self-contained script as they stand."""


@dataclass(frozen=True)
class EmbeddedModule:
    name: str  # dotted name under the private package, e.g. "_pgolf.model.gpt"
    path: str  # source file, relative to the source root
    is_package: bool
    source: str  # with imports of `pipeline` renamed


def _module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module is imported (not those inside functions)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child)

    visit(tree)
    return found


def _top(name: str) -> str:
    return name.split(".")[0]


def _rename_imports(source: str, path: str) -> str:
    """``from pipeline[.x] import ...`` -> ``from _pgolf[.x] import ...``; anything else of
    ours (``import pipeline.x``) is refused, as is a module-level import the script cannot have."""
    tree = ast.parse(source, filename=path)
    for node in _module_level_imports(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        for name in names:
            if node.__class__ is ast.ImportFrom and node.level:
                continue
            if _top(name) in FORBIDDEN_IMPORTS and _top(name) != "pipeline":
                raise ExportError(f"{path}: imports {name} at module level; the exported {SCRIPT_NAME} "
                                  f"cannot depend on it (import it inside the function that needs it)")
    edits: list[tuple[int, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(_top(a.name) == "pipeline" for a in node.names):
            raise ExportError(f"{path}:{node.lineno}: `import pipeline...` cannot be embedded; "
                              f"use `from pipeline... import ...`")
        if isinstance(node, ast.ImportFrom) and not node.level and _top(node.module or "") == "pipeline":
            edits.append((node.lineno, node.col_offset))
    lines = source.splitlines(keepends=True)
    pattern = re.compile(rb"from\s+pipeline\b")
    for lineno, col in sorted(edits, reverse=True):
        raw = lines[lineno - 1].encode("utf-8")
        match = pattern.match(raw, col)
        if match is None:
            raise ExportError(f"{path}:{lineno}: cannot find `from pipeline` at column {col}")
        new = raw[:col] + f"from {PRIVATE_PACKAGE}".encode() + raw[match.end():]
        lines[lineno - 1] = new.decode("utf-8")
    return "".join(lines)


def embedded_modules(source_root: Path | None = None) -> list[EmbeddedModule]:
    """The closure of the script's program, renamed into the private package, in path order."""
    root = (source_root or _SOURCE_ROOT).resolve()
    out = []
    for f in code_files(DEFAULT_ROOTS, root):
        source = (root / f.path).read_text(encoding="utf-8")
        parts = f.path[: -len(".py")].split("/")
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join([PRIVATE_PACKAGE, *parts[1:]])
        out.append(EmbeddedModule(name, f.path, is_package, _rename_imports(source, f.path)))
    return out


def _raw_literal(source: str, path: str) -> str:
    """`source` as a raw triple-quoted literal, checked to evaluate back to exactly `source`."""
    literal = f"r'''{source}'''"
    try:
        ok = ast.literal_eval(literal) == source
    except (SyntaxError, ValueError):
        ok = False
    if not ok:
        raise ExportError(f"{path}: cannot be embedded as a raw string (it contains ''' or ends in a backslash)")
    return literal


def third_party_imports(modules: list[EmbeddedModule]) -> list[str]:
    """Top-level names of the non-stdlib packages the embedded modules import at module level
    outside ``try`` (optional imports such as FlashAttention are guarded by one)."""
    found: set[str] = set()
    for module in modules:
        tree = ast.parse(module.source)
        guarded = {id(n) for t in ast.walk(tree) if isinstance(t, ast.Try)
                   for n in ast.walk(t) if isinstance(n, (ast.Import, ast.ImportFrom))}
        for node in _module_level_imports(tree):
            if id(node) in guarded or (isinstance(node, ast.ImportFrom) and node.level):
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                top = _top(name)
                if top not in sys.stdlib_module_names and top not in (PRIVATE_PACKAGE, "__future__"):
                    found.add(top)
    return sorted(found)


_LOADER = '''
class _EmbeddedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports the modules of MODULES (dotted name -> (is_package, source)) from this file."""

    def find_spec(self, name, path=None, target=None):
        if name not in MODULES:
            return None
        return importlib.machinery.ModuleSpec(name, self, origin=f"{__file__}::{name}", is_package=MODULES[name][0])

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        source = MODULES[module.__name__][1]
        filename = module.__spec__.origin
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # tracebacks
        module.__file__ = filename
        exec(compile(source, filename, "exec", dont_inherit=True), module.__dict__)
'''

_MAIN = '''

if __name__ == "__main__":
    sys.meta_path.insert(0, _EmbeddedModules())
    from _pgolf.export.run import main

    main(PARAMS, __file__)
'''


def script_source(params: Params, source_root: Path | None = None) -> str:
    """The plain train_gpt.py for `params`, as text."""
    modules = embedded_modules(source_root)
    head = f'''"""train_gpt.py: a pgolf {pipeline.__version__} record, self-contained.

Generated by `pgolf export` from pgolf's own modules, which are embedded below
verbatim (imports of `pipeline` read `{PRIVATE_PACKAGE}`) and imported from this file;
PARAMS is the configuration the records folder's logs were produced with.

    torchrun --standalone --nproc_per_node=8 train_gpt.py

trains (for at most train.max_wallclock_seconds), averages (swa.method), packs
the int6/int8 + zstd artifact, refuses to go on if artifact + this file exceed
quant.cap_bytes, and scores it with the sliding window.  Data: the challenge's
layout under ./data/ (or DATA_PATH, the shards' folder, and TOKENIZER_PATH);
RUN_ID names ./runs/<RUN_ID>/ and ./logs/<RUN_ID>.txt; SEED picks the seed.
"""

import importlib.abc
import importlib.machinery
import linecache
import sys

PARAMS = {pprint.pformat(params.to_dict(), sort_dicts=False, width=110)}

'''
    body = ["MODULES = {"]
    for m in modules:
        body.append(f"    # ---------------------------------------------------------------- {m.path}")
        body.append(f"    {m.name!r}: ({m.is_package}, {_raw_literal(m.source, m.path)}),")
    body.append("}")
    return head + "\n".join(body) + "\n" + _LOADER + _MAIN


def modules_sha256(source_root: Path | None = None) -> str:
    """The identity of the code train_gpt.py embeds: sha256 over each module's name and source.

    quantize records it in size.json; the export refuses a run packed by other
    code.  Params are not part of it: a change that DVC re-runs only later
    stages for (eval, report) must not make an earlier seed unexportable.
    """
    digest = hashlib.sha256()
    for m in embedded_modules(source_root):
        digest.update(f"{m.name}\0{len(m.source)}\0".encode("utf-8") + m.source.encode("utf-8"))
    return digest.hexdigest()


def compressed_source(source: str) -> str:
    """A self-extracting wrapper: exec of the lzma-compressed, base85-encoded `source`."""
    packed = base64.b85encode(lzma.compress(source.encode("utf-8"), preset=9 | lzma.PRESET_EXTREME)).decode()
    return (f'import lzma as L,base64 as B\n'
            f'exec(compile(L.decompress(B.b85decode("{packed}")),"{SCRIPT_NAME}","exec"))\n')


def exported_script(params: Params, compress: bool = False, source_root: Path | None = None) -> bytes:
    """The bytes of train_gpt.py as `pgolf export` writes them."""
    source = script_source(params, source_root)
    return (compressed_source(source) if compress else source).encode("utf-8")


def exported_code_bytes(params: Params, compress: bool = False) -> int:
    """The code bytes the challenge counts for `params`: the size of the exported train_gpt.py."""
    return len(exported_script(params, compress))


def requirements(source_root: Path | None = None) -> list[str]:
    """requirements.txt lines: the embedded modules' third-party imports beyond the challenge's
    image, pinned to the versions installed here."""
    from importlib import metadata

    dists = metadata.packages_distributions()
    lines = []
    for top in third_party_imports(embedded_modules(source_root)):
        if top in CHALLENGE_IMAGE:
            continue
        for dist in dists.get(top, [top]):
            try:
                lines.append(f"{dist}=={metadata.version(dist)}")
            except metadata.PackageNotFoundError:
                lines.append(dist)
    return lines
