from django.db import models


class FloorRequest(models.Model):
    """A plain table with the reset form's fields: no constraints, no
    indexes beyond the primary key, no events, no outbox."""

    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100)
    date_of_birth = models.DateField()
    email = models.EmailField(max_length=254)
    phone = models.CharField(max_length=32)
    appointment_date = models.DateField()
    reason = models.CharField(max_length=20)
    details = models.TextField(blank=True)
    submitted_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"floor #{self.pk}"
