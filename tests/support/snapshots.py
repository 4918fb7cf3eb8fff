"""Everything a workflow call could change about a request, read fresh from
the database: ``assert snapshot(reset) == before`` says a refused call wrote
nothing at all."""

from __future__ import annotations

from typing import Any

from requests_app.models import OutboundEmail, RequestEvent, ResetRequest


def snapshot(reset: ResetRequest) -> dict[str, Any]:
    fresh = ResetRequest.objects.get(pk=reset.pk)
    return {
        "row": {f.attname: getattr(fresh, f.attname) for f in ResetRequest._meta.concrete_fields},
        "events": list(RequestEvent.objects.filter(reset=reset).values_list("pk", flat=True)),
        "emails": list(OutboundEmail.objects.filter(reset=reset).values_list("pk", flat=True)),
    }
