"""Python binding of libaethercache (pure ctypes).

    from aether_cache import Cache, NotFoundError
    with Cache(store="redis://127.0.0.1:6379/0") as c:
        c.touch(affinity_key="key-1", api_format="openai", model_name="gpt-4o",
                provider_id="prov", endpoint_id="endp", key_id="pkey")
        pin = c.get("key-1", "openai", "gpt-4o")

The shared library is found through ACACHE_LIBRARY, then LD_LIBRARY_PATH,
then pkg-config, then the system search path (see library_path()); importing
fails with ImportError when it is missing or its major.minor version differs
from this binding's.
"""
from . import _constants as constants
from ._constants import Outcome, ReportAction, ReservationPhase, Status, TargetKind, TouchResult
from ._lib import BINDING_VERSION as __version__
from ._lib import lib as _lib
from ._lib import library_path
from .cache import Affinity, Cache, ClosedError, ReportResult
from .errors import (AetherCacheError, CatalogUnavailableError, CryptoError,
                     InvalidArgumentError, NotFoundError, OutOfMemoryError,
                     StoreUnavailableError, UnsupportedError)


def library_version() -> str:
    """Version string of the loaded libaethercache, e.g. "0.2.0"."""
    return str(_lib.acache_version().decode())


def strerror(status: int) -> str:
    """The library's short description of a status code."""
    return str(_lib.acache_strerror(int(status)).decode())


def http_status(status: int) -> int:
    """HTTP status an admin server answers for a library status."""
    return int(_lib.acache_http_status(int(status)))


__all__ = [
    "Affinity", "Cache", "ClosedError", "ReportResult",
    "Status", "TouchResult", "ReservationPhase", "Outcome", "ReportAction", "TargetKind",
    "constants",
    "library_path", "library_version", "strerror", "http_status", "__version__",
    "AetherCacheError", "NotFoundError", "InvalidArgumentError",
    "StoreUnavailableError", "CatalogUnavailableError", "CryptoError",
    "UnsupportedError", "OutOfMemoryError",
]
