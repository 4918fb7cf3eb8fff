"""requests_app.db.numbered: the prepared statements' ``%s`` as PostgreSQL's
own ``$n`` (the statements themselves run in tests/test_submit_postgres.py)."""

from __future__ import annotations

import pytest

from requests_app.db import numbered


def test_placeholders_are_numbered_in_order() -> None:
    assert numbered("SELECT %s, %s FROM t WHERE id = ANY(%s)") == "SELECT $1, $2 FROM t WHERE id = ANY($3)"


def test_a_doubled_percent_sign_is_a_percent_sign_and_no_placeholder() -> None:
    assert numbered("SELECT %s WHERE name LIKE 'a%%' AND x = %s") == "SELECT $1 WHERE name LIKE 'a%' AND x = $2"
    assert numbered("SELECT '%%s', %s") == "SELECT '%s', $1"


def test_a_statement_without_placeholders_is_unchanged() -> None:
    assert numbered("SELECT 1") == "SELECT 1"


@pytest.mark.parametrize("sql", ["SELECT %d", "SELECT %(name)s", "SELECT 5 % 2", "SELECT %"])
def test_any_other_percent_sign_is_refused(sql: str) -> None:
    with pytest.raises(ValueError, match="only %s placeholders"):
        numbered(sql)
