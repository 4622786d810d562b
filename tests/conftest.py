import os
import sys

import pytest

from tests.stackrunner import Stack

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "corestore_project.settings")


@pytest.fixture(scope="session")
def stack():
    """One running node stack shared by the tests that do not stop it."""
    node = Stack()
    try:
        node.start()
        yield node
    except BaseException:
        print(node.output_tail(), file=sys.stderr)
        raise
    finally:
        node.cleanup()


@pytest.fixture
def private_stack():
    """A stack of the test's own, for tests that kill or restart it."""
    node = Stack()
    try:
        yield node
    finally:
        node.cleanup()
