"""No import circle between llmserver's modules.

A circle forces one side to import lazily (inside a function) and makes the import order
decide whether a name exists yet. Imports under ``TYPE_CHECKING`` and inside functions
count: grimp reads every import statement, and a lazy import is still a dependency.
"""

from __future__ import annotations

import grimp


def import_circles(graph: grimp.ImportGraph) -> set[frozenset[str]]:
    """Each set of modules that import one another, directly or through others."""
    circles = set()
    for module in graph.modules:
        # The modules it depends on that also depend on it: its strongly connected component.
        circle = graph.find_upstream_modules(module) & graph.find_downstream_modules(module)
        if circle:
            circles.add(frozenset({module, *circle}))
    return circles


def test_no_module_imports_itself_through_others() -> None:
    graph = grimp.build_graph("llmserver", cache_dir=None)

    assert sorted(sorted(circle) for circle in import_circles(graph)) == []


def test_a_circle_is_found() -> None:
    graph = grimp.ImportGraph()
    for module in ("a", "b", "c", "d"):
        graph.add_module(module)
    graph.add_import(importer="a", imported="b")
    graph.add_import(importer="b", imported="c")
    graph.add_import(importer="c", imported="a")
    graph.add_import(importer="c", imported="d")

    assert import_circles(graph) == {frozenset({"a", "b", "c"})}
