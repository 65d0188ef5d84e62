"""One contract suite per port: subclass it in a test module to run it against an adapter.

Each suite is a class of async test methods that take the adapter from one
fixture: ``storage`` for `ImageStorageContract`, ``repo`` for
`InstructionRepositoryContract`, ``broker`` for `MessageBrokerContract`.
Name the subclass ``Test...`` and define the fixture beside it (fresh and
empty for each test, closed after it)::

    from imagecore.testing.contracts import ImageStorageContract

    class TestDictStorage(ImageStorageContract):
        @pytest.fixture
        def storage(self):
            return DictStorage()

The suites need pytest and pytest-asyncio (the ``testing`` extra installs
both) and run in its strict or auto mode; an async fixture in strict mode is a
``pytest_asyncio.fixture``. The suite classes are never collected on their
own (their names do not start with ``Test``).
`imagecore.testing.contracts.factories` builds the domain records they use.
"""

from __future__ import annotations

from imagecore.testing.contracts.broker import MessageBrokerContract
from imagecore.testing.contracts.repository import InstructionRepositoryContract
from imagecore.testing.contracts.storage import ImageStorageContract

__all__ = ["ImageStorageContract", "InstructionRepositoryContract", "MessageBrokerContract"]
