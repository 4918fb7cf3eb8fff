"""`make bench`: the production processes under load, against a floor
measured in the same run. ``python -m bench.run --help``."""
