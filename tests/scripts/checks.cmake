# Packaging checks: exported symbols, install + outside programs, headers.
add_test(NAME headers COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/scripts/check-headers.sh)
set_tests_properties(headers PROPERTIES LABELS unit)
if(NOT ACACHE_SANITIZE)
  add_test(NAME symbols COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/scripts/check-symbols.sh
           $<TARGET_FILE:aethercache> ${PROJECT_SOURCE_DIR}/docs/symbols.txt)
  add_test(NAME install COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/scripts/check-install.sh
           ${PROJECT_BINARY_DIR})
  set_tests_properties(symbols install PROPERTIES LABELS unit)
endif()
