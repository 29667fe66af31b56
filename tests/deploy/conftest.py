import pytest

from .stack_model import LocalStack, load_local_stack


@pytest.fixture(scope="session")
def stack() -> LocalStack:
    """The local stack read once; tests that change it work on a deep copy."""
    return load_local_stack()
