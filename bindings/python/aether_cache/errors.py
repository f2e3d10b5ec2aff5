"""Exceptions raised for the library's negative status codes."""
from typing import Dict, Type

from . import _constants as K

__all__ = [
    "AetherCacheError", "NotFoundError", "InvalidArgumentError", "StoreUnavailableError",
    "CatalogUnavailableError", "CryptoError", "UnsupportedError", "OutOfMemoryError",
]


class AetherCacheError(Exception):
    """A libaethercache call failed. `status` is the acache_status (negative)
    and `message` the thread's acache_last_error() read right after the call."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__("%s (status %d)" % (message, status) if message
                         else "status %d" % status)

    def __repr__(self) -> str:
        return "%s(status=%d, message=%r)" % (type(self).__name__, self.status, self.message)


class NotFoundError(AetherCacheError, LookupError):
    """ACACHE_ENOTFOUND: no such pin, user or key."""


class InvalidArgumentError(AetherCacheError, ValueError):
    """ACACHE_EINVALID: bad argument, URI or struct version."""


class StoreUnavailableError(AetherCacheError, ConnectionError):
    """ACACHE_ESTORE: Redis down or failed mid-operation."""


class CatalogUnavailableError(AetherCacheError, ConnectionError):
    """ACACHE_ECATALOG: PostgreSQL or the JSON catalog failed."""


class CryptoError(AetherCacheError):
    """ACACHE_ECRYPTO: a token did not verify or decrypt, or no key is set."""


class UnsupportedError(AetherCacheError):
    """ACACHE_EUNSUPPORTED: the configured store/catalog cannot do this."""


class OutOfMemoryError(AetherCacheError, MemoryError):
    """ACACHE_ENOMEM: the library could not allocate."""


_BY_STATUS: Dict[int, Type[AetherCacheError]] = {
    K.ACACHE_ENOTFOUND: NotFoundError,
    K.ACACHE_EINVALID: InvalidArgumentError,
    K.ACACHE_ESTORE: StoreUnavailableError,
    K.ACACHE_ECATALOG: CatalogUnavailableError,
    K.ACACHE_ECRYPTO: CryptoError,
    K.ACACHE_ENOMEM: OutOfMemoryError,
    K.ACACHE_EUNSUPPORTED: UnsupportedError,
}


def error_for(status: int, message: str) -> AetherCacheError:
    """The exception instance for a negative status."""
    return _BY_STATUS.get(status, AetherCacheError)(status, message)
