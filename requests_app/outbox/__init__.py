"""The outbox: every email is a row before it is a Celery message.

- ``queue``: rows written in the caller's transaction, published after commit;
- ``publish``: outbox ids to the broker, by task name;
- ``send``: a worker claims rows, sends them over SMTP, marks them;
- ``sweep``: rows whose message was lost or whose worker died go out again;
- ``render``: templates → subject, text and HTML; ``backends``: the local
  run's ``.eml`` files.
"""
