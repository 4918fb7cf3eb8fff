"""``{% fixed %}…{% endfixed %}``: a stretch of an email template that is the
same for every email in one language — it reads nothing but the practice's
settings (outbox/render.py, practice_context) and the reply-by time of the
minute (render.SAME_FOR_A_MINUTE).

Most of an email is such text (the translated paragraphs, the practice's
name, phone and address): rendered once per process and language, the
emails after it take it as it came out the first time, instead of
looking up a dozen translations again (about half of the templates' cost).
The outbox's sender hands every batch this process's store of them
(``kept_fragments``): a submission's task is one acknowledgment and one
staff notice, so a store per batch would render every stretch again for
each. The store holds one store per language; an email is rendered with the
one of its language (the language it is written in, outbox/render.py's
build_message) in the ``outbox_fragments`` context variable, so a stretch
does not ask which language is active (asking costs more than a TextNode's
rendering, a dozen times per email). Hence an email template does not
switch language with ``{% language %}`` (tests/test_email_fragments.py
checks). Without a store (a preview, a test that builds one message) the
stretch is rendered every time.

What may be inside is checked when the template is read: text, variables,
``translate`` and ``blocktranslate`` (without ``as``, ``count`` or
``plural``), every variable one of practice_context's or the reply-by time.
Anything else (an ``if``, an ``include``, a block, the patient's name, a
date) is a template error, so a patient's own details cannot end up in
another patient's email.
The key of a kept stretch also holds the autoescaping and the values of the
variables it reads.

``date_to_the_minute``: Django's ``date`` filter, remembered for a format
that shows nothing finer than minutes — the reply-by time every email of a
minute gives (render.reply_by_text), the same text within a minute (a
tenth of a millisecond a time for the time zone, the format and the month's
and day's names).
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Any

from django import template
from django.template.base import FilterExpression, Node, NodeList, TextNode, TokenType, Variable, VariableNode
from django.template.defaultfilters import date as date_filter
from django.templatetags.i18n import BlockTranslateNode, TranslateNode
from django.utils import translation
from django.utils.formats import FORMAT_SETTINGS

register = template.Library()

# The context variable holding the kept stretches (a dict).
FRAGMENTS = "outbox_fragments"

# This process's kept stretches, per language. Each key holds everything else
# its text depends on (the node, the autoescaping, the settings' values), so
# an entry stays right as long as the process runs; there are a few dozen
# (each stretch of each kind, per language), and the store is emptied should
# template reloads or changing settings ever take it past this.
KEPT_MAX = 1000
# Per language: a stretch's text by its key, and (outbox/filled_in.py) a
# patient email's kept rendering by its kind's key.
Kept = dict[str, dict[Any, Any]]
_kept: Kept = {}


def kept_fragments() -> Kept:
    """The store of this process's kept stretches, for the outbox's batches:
    a store per language."""
    if sum(len(kept) for kept in _kept.values()) > KEPT_MAX:
        _kept.clear()
    return _kept


class FixedNode(Node):
    def __init__(self, nodelist: NodeList, names: frozenset[str]):
        self.nodelist = nodelist
        self.names = tuple(sorted(names))

    def render(self, context: Any) -> str:
        kept = context.get(FRAGMENTS)
        if kept is None:
            return str(self.nodelist.render(context))
        # The store is the language's own (build_message).
        key = (self, context.autoescape, tuple(context.get(name) for name in self.names))
        text: str | None = kept.get(key)
        if text is None:
            text = kept[key] = self.nodelist.render(context)  # safe, as NodeList renders it
        return text


@register.tag("fixed")
def fixed(parser: Any, token: Any) -> FixedNode:
    if len(token.split_contents()) != 1:
        raise template.TemplateSyntaxError("{% fixed %} takes no arguments.")
    nodelist = parser.parse(("endfixed",))
    parser.delete_first_token()
    names: set[str] = set()
    for node in nodelist:
        names |= _names_read(node)
    allowed = _practice_names()
    if names - allowed:
        raise template.TemplateSyntaxError(
            f"{{% fixed %}} may read only the practice's settings ({', '.join(sorted(allowed))}), "
            f"not {', '.join(sorted(names - allowed))}."
        )
    return FixedNode(nodelist, frozenset(names))


def _practice_names() -> frozenset[str]:
    from ..outbox.render import shared_names

    return shared_names()


def _names_read(node: Node) -> set[str]:
    """The context variables ``node`` reads; a template error for a node
    that {% fixed %} does not take."""
    if isinstance(node, TextNode):
        return set()
    if isinstance(node, VariableNode):
        return expression_names(node.filter_expression)
    if isinstance(node, TranslateNode) and node.asvar is None:
        names = expression_names(node.filter_expression)
        if node.message_context is not None:
            names |= expression_names(node.message_context)
        return names
    if isinstance(node, BlockTranslateNode) and not (node.asvar or node.countervar or node.plural):
        names = set()
        for expression in node.extra_context.values():
            names |= expression_names(expression)
        names |= {
            token.contents
            for token in node.singular
            if token.token_type == TokenType.VAR and token.contents not in node.extra_context
        }
        if node.message_context is not None:
            names |= expression_names(node.message_context)
        return names
    raise template.TemplateSyntaxError(
        f"{{% fixed %}} takes text, variables and translations only, not {type(node).__name__}."
    )


def expression_names(expression: FilterExpression) -> set[str]:
    """The context variables ``expression`` reads: its variable's and its
    filters' arguments' (the first name of each lookup)."""
    names = set()
    if isinstance(expression.var, Variable) and expression.var.lookups:
        names.add(expression.var.lookups[0])
    for _function, arguments in expression.filters:
        for is_lookup, argument in arguments:
            if is_lookup and argument.lookups:
                names.add(argument.lookups[0])
    return names


# dateformat's characters for anything finer than a minute; a format with
# none of them writes every moment of a minute the same way.
_FINER_THAN_A_MINUTE = frozenset("suvUcr")


@register.filter(expects_localtime=True, is_safe=False)
def date_to_the_minute(value: Any, arg: Any = None) -> str:
    """``value|date:arg``, the same text, kept for the minute (in the value's
    own time zone, the active language and the format)."""
    if (
        not isinstance(value, datetime)
        or value.tzinfo is None
        or not isinstance(arg, str)
        or arg in FORMAT_SETTINGS  # DATE_FORMAT and the like come from the settings
        or _FINER_THAN_A_MINUTE.intersection(arg)
    ):
        return str(date_filter(value, arg))
    minute = value.replace(second=0, microsecond=0)
    return _minute_text(minute, str(value.tzinfo), value.utcoffset(), arg, translation.get_language())


@functools.lru_cache(maxsize=256)
def _minute_text(minute: datetime, zone: str, offset: timedelta | None, arg: str, language: str | None) -> str:
    return str(date_filter(minute, arg))
