"""Python binding of libaethercache (pure ctypes).

    from aether_cache import Cache, NotFoundError
    with Cache(store="redis://127.0.0.1:6379/0") as c:
        c.touch("key-1", "openai", "gpt-4o", "prov", "endp", "pkey")
        pin = c.get("key-1", "openai", "gpt-4o")

The shared library is found through ACACHE_LIBRARY, then pkg-config, then the
system search path; importing fails with ImportError when it is missing or
its major.minor version differs from this binding's.
"""
import enum as _enum

from . import _constants as constants
from ._lib import BINDING_VERSION as __version__
from ._lib import lib as _lib
from ._lib import library_path
from .cache import Affinity, Cache, ClosedError
from .errors import (AetherCacheError, CatalogUnavailableError, CryptoError,
                     InvalidArgumentError, NotFoundError, OutOfMemoryError,
                     StoreUnavailableError, UnsupportedError)


def _enum_from(c_type, name, prefix):
    members = constants.ENUMS[c_type]
    return _enum.IntEnum(name, {k[len(prefix):]: v for k, v in members.items()},
                         module=__name__)


Status = _enum_from("acache_status", "Status", "ACACHE_")
TouchResult = _enum_from("acache_touch_result", "TouchResult", "ACACHE_TOUCH_")
ReservationPhase = _enum_from("acache_reservation_phase", "ReservationPhase",
                              "ACACHE_RESERVATION_")
Outcome = _enum_from("acache_outcome", "Outcome", "ACACHE_OUTCOME_")
ReportAction = _enum_from("acache_report_action", "ReportAction", "ACACHE_REPORT_")


def library_version():
    """Version string of the loaded libaethercache, e.g. "0.2.0"."""
    return _lib.acache_version().decode()


def strerror(status):
    """The library's short description of a status code."""
    return _lib.acache_strerror(int(status)).decode()


def http_status(status):
    """HTTP status an admin server answers for a library status."""
    return _lib.acache_http_status(int(status))


__all__ = [
    "Affinity", "Cache", "ClosedError", "Status", "TouchResult", "ReservationPhase", "Outcome", "ReportAction",
    "constants",
    "library_path", "library_version", "strerror", "http_status", "__version__",
    "AetherCacheError", "NotFoundError", "InvalidArgumentError",
    "StoreUnavailableError", "CatalogUnavailableError", "CryptoError",
    "UnsupportedError", "OutOfMemoryError",
]
