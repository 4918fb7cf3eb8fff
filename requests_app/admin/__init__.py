"""The staff side in Django's admin: the queue (queue.py), one request's page
and its workflow forms (request_page.py), the CSV export (export.py) and the
outbox (outbox.py). The site itself, with its second factor, is the
project's: portal_reset/admin_site.py.

Every change goes through ``requests_app.services``, which knows the allowed
moves, writes the timeline with the acting user and queues the emails.
Nothing here sets ``status``.
"""

# Importing the modules registers their model admins (Django's autodiscover
# imports this package).
from . import audit, held, messages, outbox, queue  # noqa: F401
