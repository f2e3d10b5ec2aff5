# Python binding tests (bindings/python/tests) against this build's shared
# library. A sanitized library cannot be dlopen'ed by an uninstrumented
# python3 without preloading the sanitizer runtime, so these run only in a
# plain build (the CI script has one for the bindings).
if(NOT ACACHE_SANITIZE AND NOT ACACHE_TSAN)
  # The first python3 that has pytest (Debian's python3-pytest is in
  # /usr/bin/python3 even when another python3 comes first on PATH).
  if(NOT ACACHE_PYTEST_PYTHON)
    find_program(_acache_path_python3 python3)
    foreach(_py ${_acache_path_python3} /usr/bin/python3)
      if(EXISTS "${_py}")
        execute_process(COMMAND "${_py}" -c "import pytest"
                        RESULT_VARIABLE _rv OUTPUT_QUIET ERROR_QUIET)
        if(_rv EQUAL 0)
          set(ACACHE_PYTEST_PYTHON "${_py}" CACHE FILEPATH "python3 with pytest")
          break()
        endif()
      endif()
    endforeach()
  endif()
  if(ACACHE_PYTEST_PYTHON)
    add_test(NAME python
      COMMAND ${CMAKE_COMMAND} -E env
              ACACHE_LIBRARY=$<TARGET_FILE:aethercache>
              ACACHE_SHARED_DIR=${ACACHE_SHARED_DIR}
              PYTHONDONTWRITEBYTECODE=1
              ${ACACHE_PYTEST_PYTHON} -m pytest -q -p no:cacheprovider
              ${PROJECT_SOURCE_DIR}/bindings/python/tests
      WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
    set_tests_properties(python PROPERTIES LABELS integration TIMEOUT 300)

    # The same tests on the package installed as a user installs it: a venv
    # in the build directory, pip install --no-build-isolation --no-index,
    # the library through LD_LIBRARY_PATH. Needs python3-venv, python3-pip,
    # python3-setuptools and python3-wheel (skipped, exit 77, without them).
    add_test(NAME python-installed
      COMMAND ${CMAKE_COMMAND} -E env
              ACACHE_SHARED_DIR=${ACACHE_SHARED_DIR}
              sh ${PROJECT_SOURCE_DIR}/bindings/python/scripts/test-installed.sh
              ${ACACHE_PYTEST_PYTHON} ${PROJECT_BINARY_DIR}/python-installed
              ${PROJECT_SOURCE_DIR}/bindings/python $<TARGET_FILE:aethercache>)
    set_tests_properties(python-installed PROPERTIES LABELS integration TIMEOUT 300
      SKIP_RETURN_CODE 77)
  else()
    message(STATUS "python binding tests: no python3 with pytest (apt-get install python3-pytest)")
    add_test(NAME python COMMAND sh -c "echo 'no python3 with pytest found' >&2; exit 77")
    set_tests_properties(python PROPERTIES LABELS integration SKIP_RETURN_CODE 77)
    add_test(NAME python-installed COMMAND sh -c "echo 'no python3 with pytest found' >&2; exit 77")
    set_tests_properties(python-installed PROPERTIES LABELS integration SKIP_RETURN_CODE 77)
  endif()
endif()
