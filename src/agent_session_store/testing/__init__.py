"""Contract suites any backend can run: subclass them in a pytest ``Test*`` class.

``SessionStoreContract`` covers contract 3 for one store object; ``DurableSessionStoreContract``
adds several store objects and OS processes on one database; ``ArtifactStoreContract`` covers
contract 4. See each class for the fixture it needs.
"""

from .artifact_contract import ArtifactStoreContract
from .session_contract import DurableSessionStoreContract, SessionStoreContract

__all__ = ["ArtifactStoreContract", "DurableSessionStoreContract", "SessionStoreContract"]
