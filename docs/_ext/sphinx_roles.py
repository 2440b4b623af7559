"""A Griffe extension for the docs build: Sphinx cross-reference roles become links.

The docstrings use Sphinx roles (``:class:`~auralink.identity.NodeRecord```, ``:mod:`.tls```,
``:meth:`consume```). mkdocstrings' Sphinx-style parser reads parameter fields but leaves roles
in the text, where they would render as a literal ``:class:`` before the name. This extension
rewrites each role, once a package is loaded, into an ``<autoref>`` element that mkdocs-autorefs
resolves to the object's heading in the API reference:

* ``~a.b.C`` shows ``C``; ``a.b.C`` shows the full path; an explicit ``title <target>`` shows the
  title.
* ``.name`` is looked up in the current module, then in its package; a bare ``Name`` in the
  current class, then the current module, then the module's classes (for ``:meth:`connect```
  in a module docstring). The first path that exists in the loaded package wins, and imports
  are followed to where the object is defined, which is where its heading is.
* Every reference is marked ``optional``: a target that is not in the reference (a third-party
  name, say) renders as plain code instead of failing the strict build.

It touches only the docs build; the docstrings in the code stay as they are.
"""

from __future__ import annotations

import html
import re
from typing import Any

from griffe import Alias, Extension, Module, Object

_ROLE = re.compile(r":(?:py:)?(?:class|mod|meth|func|data|attr|exc|obj|const):`([^`]+)`")
_EXPLICIT = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^<>]+)>$")


def _canonical(root: Module, path: str, hops: int = 0) -> str | None:
    """Where ``path`` is defined, following imports; None if it is not in ``root``'s package.

    A path outside the package (``auralink.errors.X`` seen from ``auralink_node``) is trusted as it
    is: that package may not be loaded yet.
    """
    if path != root.path and not path.startswith(root.path + "."):
        return path
    node: Object | Alias = root
    parts = path[len(root.path) + 1 :].split(".") if path != root.path else []
    for index, part in enumerate(parts):
        if part not in node.members:
            return None
        node = node.members[part]
        if isinstance(node, Alias):  # an import: continue from where it points
            if hops > 8:
                return None
            return _canonical(root, ".".join([node.target_path, *parts[index + 1 :]]), hops + 1)
    return node.path


def _scopes(obj: Object) -> list[str]:
    """The paths a bare name is looked up in: the enclosing class, then the module."""
    scopes: list[str] = []
    node: Object | None = obj if obj.is_class or obj.is_module else obj.parent
    while node is not None:
        if node.is_class or node.is_module:
            scopes.append(node.path)
        if node.is_module:
            break
        node = node.parent
    return scopes


def _target(root: Module, obj: Object, text: str) -> tuple[str, str]:
    """The identifier and the title of one role's text."""
    explicit = _EXPLICIT.match(text)
    title = explicit["title"] if explicit else None
    text = explicit["target"] if explicit else text
    short = text.startswith("~")
    text = text.lstrip("~")
    module = obj if obj.is_module else obj.module
    name = text.lstrip(".")
    if text.startswith("."):
        package = module.path if module.is_package else module.path.rpartition(".")[0]
        candidates = [f"{module.path}.{name}", f"{package}.{name}"]
    elif text.split(".")[0] in {"auralink", "auralink_node"}:
        candidates = [text]
    else:
        candidates = [f"{scope}.{text}" for scope in _scopes(obj)]
        # A method named from the module's docstring (":meth:`connect`"): look in its classes.
        candidates += [m.path + "." + text for m in module.members.values() if not isinstance(m, Alias) and m.is_class]
    found = (_canonical(root, candidate) for candidate in candidates)
    identifier = next((path for path in found if path is not None), text)
    if title is None:
        title = name.rpartition(".")[2] if short else name
    return identifier, title


class SphinxRoles(Extension):
    """Turns Sphinx roles in docstrings into optional autorefs, once a package is loaded."""

    def on_package(self, *, pkg: Module, loader: Any, **kwargs: Any) -> None:
        self._rewrite(pkg, pkg)

    def _rewrite(self, root: Module, obj: Object) -> None:
        docstring = obj.docstring
        if docstring is not None and ":`" in docstring.value:

            def replace(match: re.Match[str]) -> str:
                identifier, title = _target(root, obj, match[1])
                return (
                    f'<autoref identifier="{html.escape(identifier)}" optional>'
                    f"<code>{html.escape(title)}</code></autoref>"
                )

            docstring.value = _ROLE.sub(replace, docstring.value)
        for member in obj.members.values():
            if not isinstance(member, Alias):  # imported objects are rewritten where they are defined
                self._rewrite(root, member)
