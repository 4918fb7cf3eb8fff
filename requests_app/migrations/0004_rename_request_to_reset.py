from django.db import migrations, models


class Migration(migrations.Migration):
    """The reset request a family member, an event or an email belongs to is
    its ``reset``: "request" is left to mean an HTTP request. The two indexes
    that name the field are rebuilt on the renamed column."""

    dependencies = [
        ("requests_app", "0003_queue_and_search_indexes"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="requestevent", name="event_request_time"),
        migrations.RemoveIndex(model_name="outboundemail", name="email_request_time"),
        migrations.RenameField(model_name="familymember", old_name="request", new_name="reset"),
        migrations.RenameField(model_name="requestevent", old_name="request", new_name="reset"),
        migrations.RenameField(model_name="outboundemail", old_name="request", new_name="reset"),
        migrations.AddIndex(
            model_name="requestevent",
            index=models.Index(fields=["reset", "created_at"], name="event_request_time"),
        ),
        migrations.AddIndex(
            model_name="outboundemail",
            index=models.Index(fields=["reset", "created_at"], name="email_request_time"),
        ),
    ]
