"""Patients for the tests on the running system: a form that passes every
rule, and every way its personal data could show up in text."""

from __future__ import annotations

import re
import uuid
from datetime import date, timedelta


def patient_form(tag: str | None = None, **overrides: str) -> dict[str, str]:
    """A reset-request form that passes every rule, for a visit well past the
    48-hour window, with an email address nobody else in the run uses."""
    tag = tag or uuid.uuid4().hex[:10]
    data = {
        "first_name": "Zephyrine",
        "last_name": "Quillfeather",
        "date_of_birth": "1979-11-07",
        "email": f"patient-{tag}@example.com",
        "phone": "(617) 555-0142",
        "appointment_date": (date.today() - timedelta(days=5)).isoformat(),
        "reason": "link_expired",
        "details": "",
    }
    data.update(overrides)
    return data


def personal_data_of(form: dict[str, str]) -> dict[str, str]:
    """Every way the patient's personal data could show up in text."""
    dob = date.fromisoformat(form["date_of_birth"])
    digits = re.sub(r"\D", "", form["phone"])
    national = digits[-10:]
    return {
        "first name": form["first_name"],
        "last name": form["last_name"],
        "email": form["email"],
        "date of birth (ISO)": dob.isoformat(),
        "date of birth (US)": dob.strftime("%m/%d/%Y"),
        "date of birth (US, short)": f"{dob.month}/{dob.day}/{dob.year}",
        "phone (as typed)": form["phone"],
        "phone (E.164)": f"+1{national}",
        "phone (digits)": national,
        "phone (dashed)": f"{national[:3]}-{national[3:6]}-{national[6:]}",
    }
