"""The layer rule of `docs/architecture.md`, checked on the source: every `import entitle.X` (those inside
functions too) and every string naming an `entitle` module must point to the same package or a lower
layer; no two packages may import each other in a cycle; `importlib`, `__import__`, `sys.modules` and
`pkgutil` (ways to reach a module without an import statement) are refused outright.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

# Lowest first. Packages in one layer are peers: they may not import each other, except in the kernel
# (the first layer) and the composition root (the last), where the cycle check alone applies.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset(
        {
            "config",
            "clock",
            "errors",
            "money",
            "periods",
            "secrets",
            "db",
            "http",
            "domain_events",
            "environments",
            "jobs",
            "sync_states",
            "actors",
        }
    ),
    frozenset({"catalog.features"}),
    frozenset({"catalog.products"}),
    frozenset({"catalog.packages"}),
    frozenset({"catalog.coupons"}),
    frozenset({"customers"}),
    frozenset({"promotions"}),
    frozenset({"subscriptions"}),
    frozenset({"contracts"}),
    frozenset({"grants"}),
    frozenset({"events"}),
    frozenset({"usage"}),
    frozenset({"credits"}),
    frozenset({"entitlements"}),
    frozenset({"billing", "webhooks", "push", "paywall", "access", "audit", "salesforce"}),
    # The console reads every domain and adapter (overview figures, sync errors); only the root imports it.
    # The embeddable widgets (issue 15) sit beside it: the two never import each other.
    frozenset({"console", "widgets"}),
    frozenset({"catalog.demo", "models", "migrations", "wiring", "app", "cli", "__main__"}),
)
OPEN_LAYERS = (0, len(LAYERS) - 1)
# The SDK runs in the customer's application: it imports nothing of the server.
ISOLATED = frozenset({"sdk"})
BANNED_MODULES = ("importlib", "pkgutil")
MODULE_STRING = re.compile(r"^entitle(\.[A-Za-z_][A-Za-z0-9_]*)+(:[A-Za-z_][A-Za-z0-9_]*)?$")


def package_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "entitle" or len(parts) < 2:
        return None
    if parts[1] == "catalog" and len(parts) > 2:
        return "catalog." + parts[2]
    return parts[1]


def rank_of(package: str) -> int | None:
    for rank, layer in enumerate(LAYERS):
        if package in layer:
            return rank
    return None


@dataclass(frozen=True)
class Reference:
    source_module: str
    target_module: str
    line: int
    how: str  # "import" or "string"


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__")


def sources(root: Path) -> dict[str, str]:
    return {module_name(p, root): p.read_text() for p in sorted(root.rglob("*.py"))}


def _docstring_nodes(tree: ast.AST) -> set[int]:
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _logger_names(tree: ast.AST) -> set[int]:
    """String arguments of `getLogger(...)`: logger names, not module lookups."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name == "getLogger":
                found.update(id(arg) for arg in node.args)
    return found


def references(module: str, source: str) -> tuple[list[Reference], list[str]]:
    """What `module` refers to, and its uses of banned module machinery."""
    tree = ast.parse(source)
    refs: list[Reference] = []
    banned: list[str] = []
    skip = _docstring_nodes(tree) | _logger_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from entitle import wiring` names a module; `from entitle import __version__` an attribute.
            names = [alias.name for alias in node.names if not alias.name.startswith("__")]
            targets = [node.module] + [f"{node.module}.{name}" for name in names]
            refs += [Reference(module, t, node.lineno, "import") for t in targets]
            if node.module.split(".")[0] in BANNED_MODULES:
                banned.append(f"{module}:{node.lineno} imports {node.module}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                refs.append(Reference(module, alias.name, node.lineno, "import"))
                if alias.name.split(".")[0] in BANNED_MODULES:
                    banned.append(f"{module}:{node.lineno} imports {alias.name}")
        elif isinstance(node, ast.Name) and node.id == "__import__":
            banned.append(f"{module}:{node.lineno} calls __import__")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr == "modules"
            and isinstance(node.value, ast.Name)
            and node.value.id == "sys"
        ):
            banned.append(f"{module}:{node.lineno} reads sys.modules")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in skip
            and MODULE_STRING.match(node.value)
        ):
            refs.append(Reference(module, node.value.split(":")[0], node.lineno, "string"))
    return refs, banned


@dataclass(frozen=True)
class Report:
    upward: list[str]
    cycles: list[list[str]]
    banned: list[str]
    unplaced: list[str]

    @property
    def ok(self) -> bool:
        return not (self.upward or self.cycles or self.banned or self.unplaced)


def check(modules: Mapping[str, str]) -> Report:
    """Check the layer rule on `{module name: source}` (the whole package, or a test's own)."""
    upward: list[str] = []
    banned: list[str] = []
    unplaced: set[str] = set()
    edges: dict[str, set[str]] = {}
    for module, source in modules.items():
        src = package_of(module)
        if src is None:
            continue
        refs, found_banned = references(module, source)
        banned += found_banned
        seen: set[tuple[int, str]] = set()
        for ref in refs:
            dst = package_of(ref.target_module)
            if dst is None or dst == src or (ref.line, dst) in seen:
                continue
            seen.add((ref.line, dst))
            where = f"{module}:{ref.line} ({ref.how} of {ref.target_module})"
            if src in ISOLATED or dst in ISOLATED:
                upward.append(f"{src} -> {dst}: {where}: the SDK and the server never import each other")
                continue
            src_rank, dst_rank = rank_of(src), rank_of(dst)
            if src_rank is None:
                unplaced.add(src)
                continue
            if dst_rank is None:
                unplaced.add(dst)
                continue
            edges.setdefault(src, set()).add(dst)
            if dst_rank > src_rank:
                upward.append(f"{src} -> {dst}: {where} imports a higher layer")
            elif dst_rank == src_rank and src_rank not in OPEN_LAYERS:
                upward.append(f"{src} -> {dst}: {where} imports a peer of its own layer")
    return Report(sorted(upward), find_cycles(edges), sorted(banned), sorted(unplaced))


def find_cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one package (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(found)
