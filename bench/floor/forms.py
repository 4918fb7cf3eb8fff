from django import forms

REASONS = [
    ("link_expired", "The invitation link expired"),
    ("never_received", "I never received the invitation email"),
    ("security_code", "The security code does not arrive or does not work"),
    ("shared_account", "Family members share one email address"),
    ("other", "Something else"),
]


class FloorForm(forms.Form):
    """The reset form's fields with Django's stock validation only."""

    first_name = forms.CharField(max_length=100)
    last_name = forms.CharField(max_length=100)
    date_of_birth = forms.DateField(input_formats=["%Y-%m-%d"])
    email = forms.EmailField(max_length=254)
    phone = forms.CharField(max_length=32)
    appointment_date = forms.DateField(input_formats=["%Y-%m-%d"])
    reason = forms.ChoiceField(choices=REASONS, widget=forms.RadioSelect)
    details = forms.CharField(required=False, max_length=1000, widget=forms.Textarea)
