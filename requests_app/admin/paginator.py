"""Pagination for lists that may hold a million rows."""

from __future__ import annotations

from typing import Any, cast

from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.utils.functional import cached_property


class CappedCountPaginator(Paginator):
    """Counts at most LIMIT + 1 rows. An exact COUNT(*) over a million
    requests on every page load costs more than the page itself, and nobody
    pages past the first thousands: they filter or search."""

    LIMIT = 10_000

    @cached_property
    def count(self) -> int:
        queryset = cast("QuerySet[Any]", self.object_list)
        return queryset.order_by()[: self.LIMIT + 1].count()

    @property
    def count_is_capped(self) -> bool:
        return self.count > self.LIMIT
