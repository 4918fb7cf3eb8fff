"""`make bench`: the production processes under load, against a floor
measured in the same run (issue 7). ``python -m bench.run --help``."""
