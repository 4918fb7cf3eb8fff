"""Messages to the patient in the admin: the practice's templates, which a
practice manager edits (``change_messagetemplate``, which the staff group
does not have: staff may only read them), and the form staff send one with
from a request's page.

A template may use only the practice's placeholders (models.PLACEHOLDERS);
the model's validators refuse anything else, so no free text reaches a
patient.
"""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import admin

from ..exceptions import WorkflowError
from ..models import PLACEHOLDERS, MessageTemplate, ResetRequest
from ..services.messages import message_text

PLACEHOLDERS_HELP = (
    "Placeholders you may use, braces included: "
    + "; ".join(f"{{{name}}} for {meaning}" for name, meaning in PLACEHOLDERS.items())
    + ". Nothing else in braces is accepted."
)


class MessageTemplateForm(forms.ModelForm):
    """The fields of a template, each text saying which placeholders it may
    use; the model's validators check them."""

    class Meta:
        model = MessageTemplate
        fields = ("title", "body_en", "body_es", "is_active", "position")
        help_texts = {"body_en": PLACEHOLDERS_HELP, "body_es": PLACEHOLDERS_HELP}
        widgets = {
            "body_en": forms.Textarea(attrs={"rows": 4, "cols": 80}),
            "body_es": forms.Textarea(attrs={"rows": 4, "cols": 80}),
        }


@admin.register(MessageTemplate)
class MessageTemplateAdmin(admin.ModelAdmin):
    """Adding, changing and deleting take Django's own permissions on the
    model: a practice manager's, not the staff group's (view only). A
    deleted template leaves the messages sent with it as they were sent."""

    form = MessageTemplateForm
    list_display = ("title", "is_active", "position")
    list_display_links = ("title",)
    list_filter = ("is_active",)
    ordering = ("position", "pk")
    search_fields = ("title",)
    actions = None


class TemplateChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return str(obj.title)


class SendMessageForm(forms.Form):
    """Choose one of the active templates to send to the patient of
    ``reset``. ``previews()`` gives each one's text as the patient will read
    it (in the request's language, placeholders filled in), for the page to
    show beside the choice; services.messages.reset_send_message sends it.

    A template that cannot be filled in (a row written past the admin's
    validation) is not offered; the service refuses it too.
    """

    template = TemplateChoiceField(
        queryset=MessageTemplate.objects.none(),
        widget=forms.RadioSelect,
        empty_label=None,
        label="Message",
        error_messages={
            "required": "Choose the message to send.",
            "invalid_choice": "That message is no longer offered.",
        },
    )
    expected_status = forms.ChoiceField(choices=ResetRequest.Status.choices, widget=forms.HiddenInput)

    def __init__(self, reset: ResetRequest, data: Any = None, initial: dict[str, Any] | None = None) -> None:
        super().__init__(data=data, initial={"expected_status": reset.status, **(initial or {})})
        self.reset = reset
        self._previews: list[tuple[MessageTemplate, str]] = []
        for template in MessageTemplate.objects.filter(is_active=True):
            try:
                self._previews.append((template, message_text(template, reset)))
            except WorkflowError:
                continue  # logged by message_text; the service refuses it too
        cast("TemplateChoiceField", self.fields["template"]).queryset = MessageTemplate.objects.filter(
            is_active=True, pk__in=[template.pk for template, _ in self._previews]
        )

    def previews(self) -> list[tuple[MessageTemplate, str]]:
        """[(template, its text in the request's language)] for each template
        offered, in the staff's list order."""
        return list(self._previews)
