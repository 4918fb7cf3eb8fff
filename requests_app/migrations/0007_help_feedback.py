"""The guide's "Did this solve it?" counts: one row per practice day, end
step and answer, holding a count and nothing else (models.HelpFeedback)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("requests_app", "0006_canonical_emails"),
    ]

    operations = [
        migrations.CreateModel(
            name="HelpFeedback",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("day", models.DateField()),
                ("step", models.SlugField(db_index=False, max_length=40)),
                ("answer", models.CharField(choices=[("yes", "Yes"), ("no", "No")], max_length=3)),
                ("count", models.PositiveIntegerField(default=0)),
            ],
            options={
                "ordering": ["-day", "step", "answer"],
                "constraints": [
                    models.UniqueConstraint(fields=("day", "step", "answer"), name="help_feedback_one_row_per_day")
                ],
            },
        ),
    ]
