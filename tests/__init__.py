import pytest

# The harness's helpers assert too: rewritten, their failures explain themselves.
# Registered before anything imports them (the tests/ package comes first).
pytest.register_assert_rewrite("tests.support")
