"""The Cache handle: one acache * shared by any number of threads."""
import ctypes
import json
import threading
from dataclasses import dataclass

from . import _constants as K
from ._lib import (AffinityCb, Buf, ClockFn, ListQuery, Options, Report, ReportResult,
                   Stats, Target, Touch, lib)
from .errors import InvalidArgumentError, error_for

__all__ = ["Affinity", "Cache", "ClosedError"]

_byref = ctypes.byref
_c_void_p = ctypes.c_void_p


class ClosedError(InvalidArgumentError):
    """The Cache was closed; no further call can use it."""

    def __init__(self):
        super().__init__(K.ACACHE_EINVALID, "aether_cache: the Cache is closed")


@dataclass(frozen=True)
class Affinity:
    """One pin (spec affinity.md "The record")."""
    affinity_key: str
    api_format: str
    model_name: str
    provider_id: str
    endpoint_id: str
    key_id: str
    created_at: float
    expire_at: float
    request_count: int


_PHASES = {"probe": K.ACACHE_RESERVATION_PROBE, "stable": K.ACACHE_RESERVATION_STABLE}


def _b(s):
    """str -> UTF-8 bytes for a const char * argument; None stays NULL."""
    if s is None or isinstance(s, bytes):
        return s
    return s.encode("utf-8")


def _u(p):
    return None if p is None else p.decode("utf-8", "replace")


def _raise(rc):
    # Read the thread-local message now: any later library call on this
    # thread may replace it.
    raise error_for(rc, lib.acache_last_error().decode("utf-8", "replace"))


def _take_text(rc, buf):
    """Return the buffer as str (or raise for rc), disposing of it either way."""
    try:
        if rc < 0:
            _raise(rc)
        return ctypes.string_at(buf.ptr, buf.size).decode("utf-8")
    finally:
        lib.acache_buf_dispose(_byref(buf))


def _unwrap(doc):
    """Admin bodies {"status": "ok", "data": X} -> X."""
    if isinstance(doc, dict) and doc.get("status") == "ok" and "data" in doc:
        return doc["data"]
    return doc


def _affinity_from(a):
    return Affinity(
        affinity_key=_u(lib.acache_affinity_client_key(a)),
        api_format=_u(lib.acache_affinity_api_format(a)),
        model_name=_u(lib.acache_affinity_model_name(a)),
        provider_id=_u(lib.acache_affinity_provider_id(a)),
        endpoint_id=_u(lib.acache_affinity_endpoint_id(a)),
        key_id=_u(lib.acache_affinity_key_id(a)),
        created_at=lib.acache_affinity_created_at(a),
        expire_at=lib.acache_affinity_expire_at(a),
        request_count=lib.acache_affinity_request_count(a),
    )


def _target(kind, **fields):
    """An acache_target of `kind` with the given string fields (None = NULL)."""
    t = Target(version=K.ACACHE_TARGET_VERSION, kind=kind)
    for name, value in fields.items():
        setattr(t, name, _b(value))
    return t


def _storage_order(a):
    # The order of the storage keys cache_affinity:{key}:{format}:{model}.
    return b":".join(_b(x) or b"" for x in (a.affinity_key, a.api_format, a.model_name))


class Cache:
    """A libaethercache handle.

    Safe to share between threads: every method may run concurrently (ctypes
    releases the GIL during the C call). close() waits for calls in flight,
    and any call after it raises ClosedError instead of touching freed memory.

    Args:
        store: store URI; None = "memory://" (redis://host:port/db, unix:///path).
        catalog: catalog URI (json:///path, a path, postgresql://...); None = none.
        encryption_key: Aether's ENCRYPTION_KEY, to decrypt stored API keys.
        use_dev_encryption_key: with no encryption_key, use Aether's development key.
        default_ttl: affinity TTL in seconds; 0 = 300.
        l1_ttl_ms, l1_max_entries: L1 cache in front of Redis; 0 = default, <0 = off.
        connect_timeout_ms, command_timeout_ms: Redis timeouts; 0 = 2000.
        mapping_list_cap, mapping_ttl: model-mapping stats settings; 0 = default.
        clock: callable returning "now" in epoch seconds (tests); None = wall clock.
    """

    def __init__(self, store=None, catalog=None, encryption_key=None,
                 use_dev_encryption_key=False, default_ttl=0, l1_ttl_ms=0,
                 l1_max_entries=0, connect_timeout_ms=0, command_timeout_ms=0,
                 mapping_list_cap=0, mapping_ttl=0, clock=None):
        self._h = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._busy = 0
        # The library's struct may be larger (fields appended in a newer
        # patch release): allocate its size and let it set the defaults.
        raw = ctypes.create_string_buffer(max(lib.acache_options_size(),
                                              ctypes.sizeof(Options)))
        rc = lib.acache_options_init(raw, K.ACACHE_OPTIONS_VERSION)
        if rc < 0:
            _raise(rc)
        o = Options.from_buffer(raw)
        o.store_uri = _b(store)
        o.catalog_uri = _b(catalog)
        o.default_ttl_s = int(default_ttl)
        o.l1_ttl_ms = int(l1_ttl_ms)
        o.l1_max_entries = int(l1_max_entries)
        o.connect_timeout_ms = int(connect_timeout_ms)
        o.command_timeout_ms = int(command_timeout_ms)
        o.encryption_key = _b(encryption_key)
        o.use_dev_encryption_key = 1 if use_dev_encryption_key else 0
        o.mapping_list_cap = int(mapping_list_cap)
        o.mapping_ttl_s = int(mapping_ttl)
        # The callback object must outlive the handle, which calls it.
        self._clock = ClockFn(lambda _payload: float(clock())) if clock else None
        if self._clock is not None:
            o.clock = self._clock
        h = _c_void_p()
        rc = lib.acache_open(_byref(h), raw)
        if rc < 0:
            _raise(rc)
        self._h = h

    # ---- lifetime ----------------------------------------------------------

    def close(self):
        """Close the handle after the calls in flight return. Idempotent."""
        with self._lock:
            h, self._h = self._h, None
            while self._busy:
                self._idle.wait()
        if h is not None:
            lib.acache_close(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_h", None) is not None:
            lib.acache_close(self._h)
            self._h = None

    @property
    def closed(self):
        return self._h is None

    def _enter(self):
        with self._lock:
            if self._h is None:
                raise ClosedError()
            self._busy += 1
            return self._h

    def _leave(self):
        with self._lock:
            self._busy -= 1
            if self._busy == 0:
                self._idle.notify_all()

    def _status(self, fn, *args):
        """fn(handle, *args) -> int status; raises on failure."""
        h = self._enter()
        try:
            rc = fn(h, *args)
            if rc < 0:
                _raise(rc)
            return rc
        finally:
            self._leave()

    def _text(self, fn, *args):
        """fn(&buf, handle, *args) -> text of the buffer."""
        buf = Buf()
        h = self._enter()
        try:
            return _take_text(fn(_byref(buf), h, *args), buf)
        finally:
            self._leave()

    def _json(self, fn, *args):
        return json.loads(self._text(fn, *args))

    def _count(self, fn, *args):
        """fn(&size_t, handle, *args) -> the count."""
        n = ctypes.c_size_t(0)
        h = self._enter()
        try:
            rc = fn(_byref(n), h, *args)
            if rc < 0:
                _raise(rc)
            return n.value
        finally:
            self._leave()

    @property
    def store_type(self):
        """"memory" or "redis"."""
        h = self._enter()
        try:
            return _u(lib.acache_store_type(h))
        finally:
            self._leave()

    # ---- gateway hot path --------------------------------------------------

    def get(self, affinity_key, api_format, model_name):
        """The live pin for (affinity_key, api_format, model_name).
        Raises NotFoundError when there is none (counted as a miss)."""
        out = _c_void_p()
        h = self._enter()
        try:
            rc = lib.acache_affinity_get(_byref(out), h, _b(affinity_key),
                                         _b(api_format), _b(model_name))
            if rc < 0:
                _raise(rc)
        finally:
            self._leave()
        try:
            return _affinity_from(out)
        finally:
            lib.acache_affinity_free(out)

    def touch(self, affinity_key, api_format, model_name, provider_id, endpoint_id,
              key_id, supports_caching=True, ttl=0):
        """Record a request served through (provider, endpoint, key).
        Returns a TouchResult (skipped, created, refreshed or switched)."""
        from . import TouchResult  # the enum is built in __init__ from _constants
        t = Touch(version=K.ACACHE_TOUCH_VERSION, affinity_key=_b(affinity_key),
                  api_format=_b(api_format), model_name=_b(model_name),
                  provider_id=_b(provider_id), endpoint_id=_b(endpoint_id),
                  key_id=_b(key_id), supports_caching=1 if supports_caching else 0,
                  ttl_s=int(ttl))
        res = ctypes.c_int(0)
        self._status(lambda h: lib.acache_affinity_touch(_byref(res), h, _byref(t)))
        return TouchResult(res.value)

    def report(self, affinity_key, api_format, model_name, provider_id, endpoint_id,
               key_id, outcome, supports_caching=True, ttl=0):
        """How a request served through (provider, endpoint, key) ended
        (acache_affinity_report): Outcome.SUCCESS is touch(); TRANSIENT counts a
        failure on the pin, dropped at max_transient_failures in a row;
        TERMINAL drops it at once (a compare-and-delete on this target).
        Returns (ReportAction, failures on the pin after the call)."""
        from . import ReportAction
        r = Report(version=K.ACACHE_REPORT_VERSION, affinity_key=_b(affinity_key),
                   api_format=_b(api_format), model_name=_b(model_name),
                   provider_id=_b(provider_id), endpoint_id=_b(endpoint_id),
                   key_id=_b(key_id), outcome=int(outcome),
                   supports_caching=1 if supports_caching else 0, ttl_s=int(ttl))
        res = ReportResult(version=K.ACACHE_REPORT_RESULT_VERSION)
        self._status(lambda h: lib.acache_affinity_report(_byref(res), h, _byref(r)))
        return ReportAction(res.action), res.failures

    # ---- listings ----------------------------------------------------------

    def records(self, affinity_key=None):
        """Every live raw record (optionally of one client key), as Affinity,
        in storage-key order (acache_affinity_foreach)."""
        out, failed = [], []

        def visit(a, _payload):
            try:
                out.append(_affinity_from(a))
                return 0
            except BaseException as e:  # noqa: BLE001 - re-raised below
                failed.append(e)
                return 1  # stop: ctypes cannot raise through C

        self._status(lib.acache_affinity_foreach, _b(affinity_key), AffinityCb(visit), None)
        if failed:
            raise failed[0]
        return sorted(out, key=_storage_order)

    def list_affinities(self, keyword=None, limit=100, offset=0):
        """The enriched listing: {"items", "meta", "matched_user_id"}."""
        q = ListQuery(version=K.ACACHE_LIST_QUERY_VERSION, keyword=_b(keyword),
                      limit=int(limit), offset=int(offset))
        return _unwrap(self._json(lib.acache_list_affinities, _byref(q)))

    def resolve_user(self, identifier):
        """User id for a user id, username, email or API key id."""
        return self._text(lib.acache_resolve_user, _b(identifier))

    def user_affinities(self, identifier):
        """One user's pins: {status, [message], user_info, affinities,
        total_endpoints}. Raises NotFoundError for an unknown identifier."""
        return self._json(lib.acache_user_affinities, _b(identifier))

    # ---- invalidation ------------------------------------------------------

    def invalidate_single(self, affinity_key, api_format, model_name, key_id=None,
                          provider_id=None, endpoint_id=None):
        """Delete one pin if every given filter matches; NotFoundError otherwise."""
        self._status(lib.acache_affinity_invalidate, _b(affinity_key), _b(api_format),
                     _b(model_name), _b(key_id), _b(provider_id), _b(endpoint_id))

    def _invalidate(self, t):
        """acache_invalidate(&n, handle, &t) -> n."""
        return self._count(lambda n, h: lib.acache_invalidate(n, h, _byref(t)))

    def invalidate_api_key(self, affinity_key):
        """Remove every pin of one client API key; returns how many."""
        return self._invalidate(_target(K.ACACHE_TARGET_API_KEY, affinity_key=affinity_key))

    def invalidate_user(self, identifier):
        """Remove the pins of a user (or of one API key id): the admin body
        {status, message, user_info, count}. NotFoundError when unknown."""
        t = _target(K.ACACHE_TARGET_USER, identifier=identifier)
        return self._json(lambda b, h: lib.acache_invalidate_json(b, h, _byref(t)))

    def invalidate_provider(self, provider_id):
        """Remove every pin naming provider_id; returns how many."""
        return self._invalidate(_target(K.ACACHE_TARGET_PROVIDER, provider_id=provider_id))

    def invalidate_key(self, key_id):
        """Remove every pin to one provider API key (key disabled); returns how many."""
        return self._invalidate(_target(K.ACACHE_TARGET_KEY, key_id=key_id))

    def invalidate_endpoint(self, endpoint_id):
        """Remove every pin to one provider endpoint; returns how many."""
        return self._invalidate(_target(K.ACACHE_TARGET_ENDPOINT, endpoint_id=endpoint_id))

    def clear_all(self):
        """Remove every affinity record; returns how many."""
        return self._invalidate(_target(K.ACACHE_TARGET_ALL))

    # ---- stats, config, metrics -------------------------------------------

    def stats(self):
        """The admin stats `data` (affinity_stats, scheduler_metrics, ...)."""
        return _unwrap(self._json(lib.acache_stats_json))

    def counters(self):
        """The raw acache_stats counters as a dict."""
        # Stats declares the version 1 layout: ask for exactly that (a newer
        # version would have the library write past the ctypes struct).
        s = Stats(version=1)
        self._status(lambda h: lib.acache_stats_get(_byref(s), h))
        return {name: getattr(s, name) for name, _ in Stats._fields_ if name != "version"}

    def config(self):
        """The admin config `data`."""
        return _unwrap(self._json(lib.acache_config_json))

    def metrics(self):
        """Prometheus text exposition (format 0.0.4)."""
        return self._text(lib.acache_metrics_text)

    def record_batch(self, batch_size):
        self._call_void(lib.acache_scheduler_record_batch, int(batch_size))

    def record_candidates(self, count):
        self._call_void(lib.acache_scheduler_record_candidates, int(count))

    def record_cache(self, hit):
        self._call_void(lib.acache_scheduler_record_cache, 1 if hit else 0)

    def record_concurrency_denied(self):
        self._call_void(lib.acache_scheduler_record_concurrency_denied)

    def record_request(self, api_format=None, model_name=None):
        self._call_void(lib.acache_scheduler_record_request, _b(api_format),
                        _b(model_name))

    def record_reservation(self, ratio, phase, confidence, load_factor):
        """Report a reservation check of the scheduler: the ratio it chose in
        phase ("probe", "stable" or a ReservationPhase), with its confidence
        and load factor. Feeds scheduler_metrics' reservation counters and
        dynamic_reservation in stats(). InvalidArgumentError for an unknown
        phase or a NaN/infinite value (nothing is recorded)."""
        if isinstance(phase, str):
            code = _PHASES.get(phase)
            if code is None:
                raise InvalidArgumentError(K.ACACHE_EINVALID,
                                           f"reservation phase {phase!r} unknown")
        else:
            code = int(phase)
        self._status(lib.acache_scheduler_record_reservation, float(ratio), code,
                     float(confidence), float(load_factor))

    def _call_void(self, fn, *args):
        h = self._enter()
        try:
            fn(h, *args)
        finally:
            self._leave()

    # ---- model-mapping cache (Redis store only) -----------------------------

    def model_mapping_stats(self):
        """The model-mapping stats `data` ({available, ...})."""
        return _unwrap(self._json(lib.acache_model_mapping_stats))

    def clear_model_mappings(self):
        """Delete every model:* / global_model:* key; returns how many.
        UnsupportedError on a non-Redis store."""
        return self._json(lib.acache_model_mapping_clear_all)["deleted_count"]

    def clear_model_mapping(self, model_name):
        """Delete global_model:resolve:{name} and global_model:name:{name};
        returns the keys that existed (in that order)."""
        return self._json(lib.acache_model_mapping_clear_model,
                          _b(model_name))["deleted_keys"]

    def clear_provider_model_mapping(self, provider_id, global_model_id):
        """Delete model:provider_global:{p}:{g} and its hits key; returns the
        keys that existed (in that order)."""
        return self._json(lib.acache_model_mapping_clear_provider, _b(provider_id),
                          _b(global_model_id))["deleted_keys"]

    # ---- usage analyses (need a catalog) -----------------------------------

    def ttl_analysis(self, hours=168, user_id=None, api_key_id=None):
        return self._json(lib.acache_ttl_analysis, int(hours), _b(user_id),
                          _b(api_key_id))

    def hit_analysis(self, hours=168, user_id=None, api_key_id=None):
        return self._json(lib.acache_hit_analysis, int(hours), _b(user_id),
                          _b(api_key_id))

    def interval_timeline(self, hours=24, limit=10000, user_id=None,
                          include_user_info=False):
        return self._json(lib.acache_interval_timeline, int(hours), int(limit),
                          _b(user_id), 1 if include_user_info else 0)

    # ---- keys --------------------------------------------------------------

    @staticmethod
    def mask_key(key, prefix_len=8, suffix_len=4):
        """Mask a key as Aether displays it; None for an empty key."""
        data = _b(key)
        if not data:
            return None
        buf = Buf()
        rc = lib.acache_mask_key(_byref(buf), data, len(data), int(prefix_len),
                                 int(suffix_len))
        return _null_if_absent(rc, buf)

    def decrypt_and_mask(self, stored):
        """Decrypt a stored key column with the handle's key and mask it;
        None when empty. CryptoError when it does not decrypt."""
        buf = Buf()
        h = self._enter()
        try:
            rc = lib.acache_decrypt_and_mask(_byref(buf), h, _b(stored))
            return _null_if_absent(rc, buf)
        finally:
            self._leave()

    @staticmethod
    def decrypt_and_mask_with_key(encryption_key, stored):
        """As decrypt_and_mask() with a per-call key (slow: PBKDF2 each call)."""
        buf = Buf()
        rc = lib.acache_decrypt_and_mask_with_key(_byref(buf), _b(encryption_key),
                                                  _b(stored))
        return _null_if_absent(rc, buf)


def _null_if_absent(rc, buf):
    # ENOTFOUND here means "the mask is null", not a failure.
    if rc == K.ACACHE_ENOTFOUND:
        lib.acache_buf_dispose(_byref(buf))
        return None
    return _take_text(rc, buf)
