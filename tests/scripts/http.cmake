# End-to-end test of the example admin HTTP server (examples/admin): starts
# acache-admin on the memory store and on a private redis-server, and checks
# every route, health/readiness, HEAD, CORS, access logs and TLS. Python 3
# standard library only; promtool is used when present, openssl (to make the
# test certificate) for the TLS checks, which are skipped without it.
find_package(Python3 COMPONENTS Interpreter QUIET)
if(TARGET acache-admin AND Python3_Interpreter_FOUND)
  set(_acache_http_args --server $<TARGET_FILE:acache-admin>)
  if(TARGET acache-replay)
    list(APPEND _acache_http_args --replay $<TARGET_FILE:acache-replay>)
  endif()
  add_test(NAME http
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/http/test_http.py
            ${_acache_http_args})
  set_tests_properties(http PROPERTIES LABELS integration TIMEOUT 300)
endif()
