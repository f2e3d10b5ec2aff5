# End-to-end test of the operator programs' command lines (examples/cli acache,
# examples/replay acache-replay, acache-admin's secret files): runs the real
# binaries on the memory store with examples/catalog.json and on a private
# redis-server. Python 3 standard library only.
find_package(Python3 COMPONENTS Interpreter QUIET)
if(TARGET acache AND Python3_Interpreter_FOUND)
  set(_acache_cli_args --cli $<TARGET_FILE:acache>)
  if(TARGET acache-replay)
    list(APPEND _acache_cli_args --replay $<TARGET_FILE:acache-replay>)
  endif()
  if(TARGET acache-admin)
    list(APPEND _acache_cli_args --admin $<TARGET_FILE:acache-admin>)
  endif()
  add_test(NAME cli
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/cli/test_cli.py
            ${_acache_cli_args})
  set_tests_properties(cli PROPERTIES LABELS integration TIMEOUT 300)
endif()
