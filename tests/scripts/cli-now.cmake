# acache --now on the example catalog (tests/scripts/check-cli-now.sh).
if(TARGET acache)
  add_test(NAME cli-now COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/scripts/check-cli-now.sh
           $<TARGET_FILE:acache>)
  set_tests_properties(cli-now PROPERTIES LABELS unit TIMEOUT 60)
endif()
