"""django-helpdesk 2.6.1 as a bench target: a Django project that is only
helpdesk's public ticket form, run from its own virtualenv (bench/helpdesk.py)."""
