"""A patient email rendered once per kind, language and settings, with a mark
where each of the email's own values goes (FILLED_IN: the name, the
reference, the status link), then filled in for each email.

Most of a patient email is the same for every email of its kind in a
language — the translated paragraphs, the practice's details, the reply-by
time of the minute — and the template engine cost most of what sending an
email cost. A template qualifies only if it uses those values in ways whose
output is the value itself: printed as it is (``{{ reference }}``, a
variable of ``{% blocktranslate %}``) or tested for being set (``{% if
first_name %}``, its answer part of the key); anything else it does with
them (a filter, a comparison, a tag this module does not know) and the kind
is rendered the usual way for every email. So is an email whose context
carries anything besides those values and values many emails share (the
practice's, the kind's outcome or close reason): nothing personal is kept,
only the text around it. The filling escapes each value where the template
escaped it (the mark tells) and nowhere else, as the template would have.

What comes out is, byte for byte, what rendering the email on its own gives
(tests/test_filled_in.py compares them for every kind, language and the
names that are hard to get right).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any

from django.template import Template
from django.template.base import FilterExpression, Node, NodeList, TextNode, TokenType, Variable, VariableNode
from django.template.defaulttags import AutoEscapeControlNode, CommentNode, IfNode, LoadNode, TemplateLiteral
from django.template.loader import get_template
from django.template.loader_tags import BlockNode, ExtendsNode, IncludeNode
from django.templatetags.i18n import BlockTranslateNode, GetCurrentLanguageNode, TranslateNode
from django.utils.html import conditional_escape

from ..templatetags.email_fragments import FixedNode, expression_names

# An email's own values, filled in for each email.
FILLED_IN = ("first_name", "reference", "status_url")
# The other values a qualifying email's context may carry: the same for
# many emails, so part of the key.
SHARED_CHOICES = frozenset({"outcome", "close_reason"})

# A mark: private-use characters around the value's number, and an "&" that
# autoescaping turns into "&amp;" — so the mark says whether the template
# escaped the value there.
_MARK = re.compile("\ue000([0-9]+)(&|&amp;)\ue001")
_MARK_CHARS = re.compile("[\ue000\ue001]")

Pieces = tuple[str | tuple[int, bool], ...]  # text, or (value's number, escaped)


@functools.cache
def qualifies(kind: str) -> bool:
    """Whether the templates of ``kind`` use the filled-in values only as
    they are (the module's docstring). Once per process: the templates, as
    the cached loader keeps them, do not change while it runs."""
    try:
        return all(_uses_as_they_are(_template_named(f"emails/{kind}_{part}")) for part in _PARTS)
    except _Unknown:
        return False


_PARTS = ("subject.txt", "body.txt", "body.html")


class _Unknown(Exception):
    """A template does something with a filled-in value this module cannot
    follow."""


def _uses_as_they_are(template: Template) -> bool:
    for node in _nodes(template.nodelist):
        _check(node)
    return True


def _nodes(nodelist: NodeList) -> Iterator[Node]:
    """Every node of ``nodelist``, of the templates it extends and includes,
    at any depth."""
    for node in nodelist:
        yield node
        if isinstance(node, ExtendsNode):
            yield from _nodes(_template_named(node.parent_name).nodelist)
        elif isinstance(node, IncludeNode):
            yield from _nodes(_template_named(node.template).nodelist)
        for attribute in node.child_nodelists:  # an {% if %}'s: every branch
            yield from _nodes(getattr(node, attribute, None) or NodeList())


def _template_named(expression: Any) -> Template:
    """The template an {% extends %} or {% include %} names (or ``expression``
    itself, a name), as the engine compiled it."""
    name = expression if isinstance(expression, str) else getattr(expression, "var", None)
    if not isinstance(name, str) or (isinstance(expression, FilterExpression) and expression.filters):
        raise _Unknown  # a template chosen at render time
    return get_template(name).template  # type: ignore[attr-defined]


# Nodes that read no variable of their own (what they hold or extend is
# walked on its own, _nodes).
_QUIET = (
    TextNode,
    LoadNode,
    CommentNode,
    GetCurrentLanguageNode,
    BlockNode,
    ExtendsNode,
    AutoEscapeControlNode,
    FixedNode,
)


def _check(node: Node) -> None:
    """Refuse (_Unknown) a node that uses a filled-in value other than as it
    is. {% fixed %} stretches cannot read them at all (email_fragments.py)."""
    if isinstance(node, _QUIET):
        return
    if isinstance(node, VariableNode):
        if not _plain(node.filter_expression):
            _refuse_mentions(node.filter_expression)
    elif isinstance(node, TranslateNode):
        _refuse_mentions(node.filter_expression, node.message_context)
    elif isinstance(node, BlockTranslateNode):
        _refuse_mentions(node.counter, node.message_context)
        for expression in node.extra_context.values():
            if not _plain(expression):
                _refuse_mentions(expression)
        tokens = [token.contents for token in node.singular + node.plural if token.token_type == TokenType.VAR]
        reads_own = bool((set(tokens) - set(node.extra_context)) & set(FILLED_IN)) or any(
            _plain(expression) for expression in node.extra_context.values()
        )
        if node.asvar and reads_own:
            raise _Unknown  # kept in a variable, to be printed who knows how
    elif isinstance(node, IfNode):
        for condition, _branch in node.conditions_nodelists:
            if not (isinstance(condition, TemplateLiteral) and _plain(condition.value)):
                _refuse_condition(condition)
    elif isinstance(node, IncludeNode):
        _refuse_mentions(*node.extra_context.values())
    else:
        raise _Unknown


def _plain(expression: Any) -> bool:
    """``{{ name }}``: a filled-in value printed as it is."""
    var = getattr(expression, "var", None)
    return (
        isinstance(expression, FilterExpression)
        and not expression.filters
        and isinstance(var, Variable)
        and var.lookups is not None
        and len(var.lookups) == 1
        and var.lookups[0] in FILLED_IN
    )


def _refuse_mentions(*expressions: Any) -> None:
    for expression in expressions:
        if isinstance(expression, FilterExpression) and expression_names(expression) & set(FILLED_IN):
            raise _Unknown


def _refuse_condition(condition: Any) -> None:
    if isinstance(condition, TemplateLiteral):
        _refuse_mentions(condition.value)
        return
    for part in (getattr(condition, "first", None), getattr(condition, "second", None)):
        if part is not None:
            _refuse_condition(part)


def key_and_marked(kind: str, context: dict[str, Any], shared: frozenset[str]) -> tuple[Any, dict[str, Any]] | None:
    """The key of the email's kept rendering and its context with marks in
    place of its own values; None if the email does not qualify (its kind,
    or a context carrying more than its own values and ``shared`` ones)."""
    own = [context.get(name, "") for name in FILLED_IN]
    others = {name: value for name, value in context.items() if name not in FILLED_IN}
    if not set(others) <= shared | SHARED_CHOICES or not all(isinstance(value, str) for value in own):
        return None
    if any(_MARK_CHARS.search(value) for value in own) or not qualifies(kind):
        return None
    try:
        key = ("email", kind, tuple(bool(value) for value in own), tuple(sorted(others.items())))
        hash(key)
    except TypeError:
        return None
    marked = dict(context)
    for number, (name, value) in enumerate(zip(FILLED_IN, own, strict=True)):
        if value:  # an empty one stays empty: "{% if first_name %}" reads it
            marked[name] = f"\ue000{number}&\ue001"
    return key, marked


def pieces(rendered: str) -> Pieces | None:
    """``rendered`` (rendered with the marks) cut at the marks; None if any
    other text holds a mark's characters."""
    parts = _MARK.split(rendered)
    texts = parts[::3]
    if any(_MARK_CHARS.search(text) for text in texts):
        return None
    cut: list[str | tuple[int, bool]] = [texts[0]]
    for index in range(1, len(parts), 3):
        cut += [(int(parts[index]), parts[index + 1] == "&amp;"), parts[index + 2]]
    return tuple(cut)


def filled(kept: Pieces, context: dict[str, Any]) -> str:
    """A kept rendering with this email's values, escaped where the
    template escaped them (as render_value_in_context does a str)."""
    values = [str(context.get(name, "")) for name in FILLED_IN]
    return "".join(
        piece if isinstance(piece, str) else (conditional_escape(values[piece[0]]) if piece[1] else values[piece[0]])
        for piece in kept
    )
