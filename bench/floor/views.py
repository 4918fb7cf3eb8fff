"""A minimal form-and-insert view: validate, insert one row, 303."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from .forms import FloorForm
from .models import FloorRequest


@require_http_methods(["GET", "POST"])
def floor_form(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = FloorForm(request.POST)
        if form.is_valid():
            row = FloorRequest.objects.create(**form.cleaned_data, submitted_at=timezone.now())
            response = redirect("bench_floor:done", pk=row.pk)
            response.status_code = 303
            return response
    else:
        form = FloorForm()
    return render(request, "floor/form.html", {"form": form})


@require_GET
def floor_done(request: HttpRequest, pk: int) -> HttpResponse:
    return HttpResponse(f"Received #{pk}.", content_type="text/plain")
