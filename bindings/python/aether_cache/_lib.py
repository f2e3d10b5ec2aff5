"""Locating and loading libaethercache, and declaring the C prototypes.

ctypes needs every signature spelled out: without argtypes/restype a
size_t or double would be passed as an int and 64-bit values truncated.
"""
import ctypes
import ctypes.util
import os
import subprocess
from typing import Any, Callable, List, Optional

from . import _constants as K

__all__ = ["lib", "Buf", "Options", "ClockFn", "Touch", "Target", "ListQuery", "AffinityCb",
           "BINDING_VERSION", "library_path"]

BINDING_VERSION = K.ACACHE_VERSION_STRING

c_char_p = ctypes.c_char_p
c_void_p = ctypes.c_void_p
c_int = ctypes.c_int
c_uint = ctypes.c_uint
c_size_t = ctypes.c_size_t
c_double = ctypes.c_double
c_int64 = ctypes.c_int64
c_uint32 = ctypes.c_uint32
c_uint64 = ctypes.c_uint64
P = ctypes.POINTER


class Buf(ctypes.Structure):
    """acache_buf (buffer.h): its three-field layout is part of the ABI, so the
    binding declares it instead of asking the library for heap buffers.
    Always released with acache_buf_dispose(), its one release function."""
    _fields_ = [("ptr", c_void_p), ("size", c_size_t), ("reserved", c_size_t)]


class Touch(ctypes.Structure):
    """acache_touch version 1 (affinity.h), the input of acache_affinity_touch()."""
    _fields_ = [
        ("version", c_uint),
        ("affinity_key", c_char_p),
        ("api_format", c_char_p),
        ("model_name", c_char_p),
        ("provider_id", c_char_p),
        ("endpoint_id", c_char_p),
        ("key_id", c_char_p),
        ("supports_caching", c_int),
        ("ttl_s", c_uint32),
    ]


class Report(ctypes.Structure):
    """acache_report version 1 (affinity.h), the input of acache_affinity_report()."""
    _fields_ = [
        ("version", c_uint),
        ("affinity_key", c_char_p),
        ("api_format", c_char_p),
        ("model_name", c_char_p),
        ("provider_id", c_char_p),
        ("endpoint_id", c_char_p),
        ("key_id", c_char_p),
        ("outcome", c_int),
        ("supports_caching", c_int),
        ("ttl_s", c_uint32),
    ]


class ReportResult(ctypes.Structure):
    """acache_report_result version 1 (affinity.h)."""
    _fields_ = [("version", c_uint), ("action", c_int), ("failures", c_uint32)]


class Target(ctypes.Structure):
    """acache_target version 1 (admin.h): what acache_invalidate() removes."""
    _fields_ = [
        ("version", c_uint),
        ("kind", c_int),
        ("affinity_key", c_char_p),
        ("api_format", c_char_p),
        ("model_name", c_char_p),
        ("endpoint_id", c_char_p),
        ("key_id", c_char_p),
        ("provider_id", c_char_p),
        ("identifier", c_char_p),
    ]


class ListQuery(ctypes.Structure):
    """acache_list_query version 1 (listing.h)."""
    _fields_ = [
        ("version", c_uint),
        ("keyword", c_char_p),
        ("limit", c_int64),
        ("offset", c_int64),
    ]


# int (*acache_affinity_cb)(const acache_affinity *a, void *payload)
AffinityCb = ctypes.CFUNCTYPE(c_int, c_void_p, c_void_p)


ClockFn = ctypes.CFUNCTYPE(c_double, c_void_p)


class Options(ctypes.Structure):
    """acache_options version 1 (cache.h). Appended fields of a newer
    library are covered by allocating acache_options_size() bytes."""
    _fields_ = [
        ("version", c_uint),
        ("store_uri", c_char_p),
        ("catalog_uri", c_char_p),
        ("default_ttl_s", c_uint32),
        ("l1_ttl_ms", ctypes.c_int32),
        ("l1_max_entries", ctypes.c_int32),
        ("connect_timeout_ms", c_uint32),
        ("command_timeout_ms", c_uint32),
        ("encryption_key", c_char_p),
        ("use_dev_encryption_key", c_int),
        ("mapping_list_cap", c_uint32),
        ("mapping_ttl_s", c_uint32),
        ("clock", ClockFn),
        ("clock_payload", c_void_p),
    ]


class Stats(ctypes.Structure):
    """acache_stats version 1 (cache.h)."""
    _fields_ = [
        ("version", c_uint),
        ("total_affinities", c_uint64),
        ("cache_hits", c_uint64),
        ("cache_misses", c_uint64),
        ("cache_hit_rate", c_double),
        ("cache_invalidations", c_uint64),
        ("provider_switches", c_uint64),
        ("key_switches", c_uint64),
        ("malformed_records", c_uint64),
        ("active_affinities", c_int64),
        ("default_ttl_s", c_uint32),
    ]


# The file the dynamic linker would load for a program linked against this
# binding's major.minor (the SONAME), then the unversioned development link.
_SONAME = "libaethercache.so.%d.%d" % (K.ACACHE_VERSION_MAJOR, K.ACACHE_VERSION_MINOR)
_LIB_NAMES = (_SONAME, "libaethercache.so")


def _ld_library_path_lib() -> Optional[str]:
    for d in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep):
        for name in _LIB_NAMES if d else ():
            path = os.path.join(d, name)
            if os.path.exists(path):
                return path
    return None


def _pkg_config_libdir() -> Optional[str]:
    try:
        out = subprocess.run(
            ["pkg-config", "--variable=libdir", "aether-cache"],
            capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    libdir = out.stdout.strip()
    if out.returncode != 0 or not libdir:
        return None
    for name in sorted(os.listdir(libdir)) if os.path.isdir(libdir) else []:
        if name.startswith("libaethercache.so"):
            return os.path.join(libdir, name)
    return None


def library_path() -> Optional[str]:
    """The libaethercache this binding loads, the first of: $ACACHE_LIBRARY
    (the file's path); libaethercache.so.MAJOR.MINOR (or .so) in a directory
    of $LD_LIBRARY_PATH; the libdir of `pkg-config aether-cache` (a prefix
    outside the linker's path); ctypes.util.find_library (ldconfig's cache)."""
    explicit = os.environ.get("ACACHE_LIBRARY")
    if explicit:
        return explicit
    return (_ld_library_path_lib() or _pkg_config_libdir()
            or ctypes.util.find_library("aethercache"))


# (name, restype, argtypes) of every function the binding calls.
_PROTOS = [
    ("acache_version", c_char_p, []),
    ("acache_version_number", c_int, []),
    ("acache_strerror", c_char_p, [c_int]),
    ("acache_last_error", c_char_p, []),
    ("acache_clear_error", None, []),
    ("acache_buf_dispose", None, [P(Buf)]),
    ("acache_options_init", c_int, [c_void_p, c_uint]),
    ("acache_options_size", c_size_t, []),
    ("acache_open", c_int, [P(c_void_p), c_void_p]),
    ("acache_close", None, [c_void_p]),
    ("acache_store_type", c_char_p, [c_void_p]),
    ("acache_stats_get", c_int, [P(Stats), c_void_p]),
    ("acache_stats_json", c_int, [P(Buf), c_void_p]),
    ("acache_config_json", c_int, [P(Buf), c_void_p]),
    ("acache_metrics_text", c_int, [P(Buf), c_void_p]),
    ("acache_scheduler_record_batch", None, [c_void_p, c_uint64]),
    ("acache_scheduler_record_candidates", None, [c_void_p, c_uint64]),
    ("acache_scheduler_record_cache", None, [c_void_p, c_int]),
    ("acache_scheduler_record_concurrency_denied", None, [c_void_p]),
    ("acache_scheduler_record_request", None, [c_void_p, c_char_p, c_char_p]),
    ("acache_scheduler_record_reservation", c_int, [c_void_p, c_double, c_int, c_double,
                                                    c_double]),
    # affinity.h
    ("acache_affinity_get", c_int, [P(c_void_p), c_void_p, c_char_p, c_char_p, c_char_p]),
    ("acache_affinity_free", None, [c_void_p]),
    ("acache_affinity_to_json", c_int, [P(Buf), c_void_p]),
    ("acache_affinity_touch", c_int, [P(c_int), c_void_p, P(Touch)]),
    ("acache_affinity_report", c_int, [P(ReportResult), c_void_p, P(Report)]),
    ("acache_affinity_invalidate", c_int, [c_void_p, c_char_p, c_char_p, c_char_p,
                                           c_char_p, c_char_p, c_char_p]),
    ("acache_affinity_foreach", c_int, [c_void_p, c_char_p, AffinityCb, c_void_p]),
    # admin.h
    ("acache_invalidate", c_int, [P(c_size_t), c_void_p, P(Target)]),
    ("acache_invalidate_json", c_int, [P(Buf), c_void_p, P(Target)]),
    ("acache_http_status", c_int, [c_int]),
    # listing.h
    ("acache_list_affinities", c_int, [P(Buf), c_void_p, P(ListQuery)]),
    ("acache_resolve_user", c_int, [P(Buf), c_void_p, c_char_p]),
    ("acache_user_affinities", c_int, [P(Buf), c_void_p, c_char_p]),
    # mapping.h
    ("acache_model_mapping_stats", c_int, [P(Buf), c_void_p]),
    ("acache_model_mapping_clear_all", c_int, [P(Buf), c_void_p]),
    ("acache_model_mapping_clear_model", c_int, [P(Buf), c_void_p, c_char_p]),
    ("acache_model_mapping_clear_provider", c_int, [P(Buf), c_void_p, c_char_p, c_char_p]),
    # analysis.h
    ("acache_ttl_analysis", c_int, [P(Buf), c_void_p, c_int, c_char_p, c_char_p]),
    ("acache_hit_analysis", c_int, [P(Buf), c_void_p, c_int, c_char_p, c_char_p]),
    ("acache_interval_timeline", c_int, [P(Buf), c_void_p, c_int, c_int, c_char_p, c_int]),
    # crypto.h
    ("acache_mask_key", c_int, [P(Buf), c_char_p, c_size_t, c_uint, c_uint]),
    ("acache_decrypt_and_mask", c_int, [P(Buf), c_void_p, c_char_p]),
    ("acache_decrypt_and_mask_with_key", c_int, [P(Buf), c_char_p, c_char_p]),
]

# The record getters, read once per get() into a frozen dataclass.
_GETTERS = [
    ("acache_affinity_client_key", c_char_p),
    ("acache_affinity_api_format", c_char_p),
    ("acache_affinity_model_name", c_char_p),
    ("acache_affinity_provider_id", c_char_p),
    ("acache_affinity_endpoint_id", c_char_p),
    ("acache_affinity_key_id", c_char_p),
    ("acache_affinity_created_at", c_double),
    ("acache_affinity_expire_at", c_double),
    ("acache_affinity_request_count", c_int64),
]


def _absent(path: str, name: str) -> Callable[..., Any]:
    def call(*_args: Any) -> Any:
        raise NotImplementedError("aether_cache: %s does not export %s" % (path, name))
    return call


def _load() -> Any:
    path = library_path()
    if not path:
        raise ImportError(
            "aether_cache: libaethercache not found (set ACACHE_LIBRARY to the "
            "path of libaethercache.so, or install it where pkg-config finds it)")
    try:
        dll = ctypes.CDLL(path)
    except OSError as e:
        raise ImportError("aether_cache: cannot load %s: %s" % (path, e)) from e
    missing: List[str] = []
    for name, restype, argtypes in _PROTOS:
        fn = getattr(dll, name, None)
        if fn is None:
            missing.append(name)
            continue
        fn.restype = restype
        fn.argtypes = argtypes
    for name, restype in _GETTERS:
        fn = getattr(dll, name, None)
        if fn is None:
            missing.append(name)
            continue
        fn.restype = restype
        fn.argtypes = [c_void_p]
    if "acache_version" in missing:
        raise ImportError("aether_cache: %s is not libaethercache" % path)
    loaded = dll.acache_version().decode()
    if loaded.split(".")[:2] != BINDING_VERSION.split(".")[:2]:
        raise ImportError(
            "aether_cache: binding %s needs libaethercache %s.x, but %s is %s"
            % (BINDING_VERSION, ".".join(BINDING_VERSION.split(".")[:2]), path, loaded))
    # A library built without some part still serves the rest; calling a
    # missing function says exactly what is absent.
    for name in missing:
        setattr(dll, name, _absent(path, name))
    if ctypes.sizeof(Options) > dll.acache_options_size():
        raise ImportError("aether_cache: acache_options of %s is smaller than the "
                          "binding's (%d < %d)" % (path, dll.acache_options_size(),
                                                   ctypes.sizeof(Options)))
    return dll


#: The loaded CDLL with every prototype declared (Any: ctypes functions are
#: looked up by name).
lib: Any = _load()
