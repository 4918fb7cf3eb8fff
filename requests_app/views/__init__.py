"""Patient pages, one module each: the guide, the reset form, the
confirmation and status pages, the health check. Thin: parse, call a
service, redirect after POST."""
