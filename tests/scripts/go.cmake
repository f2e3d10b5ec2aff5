# Go binding tests (bindings/go) against this build's shared library, through
# a pkg-config file for the build tree. Plain builds only: the uninstrumented
# go test binary cannot load a sanitized library.
if(NOT ACACHE_SANITIZE AND NOT ACACHE_TSAN)
  find_program(ACACHE_GO go)
  set(_acache_go_pc_dir ${PROJECT_BINARY_DIR}/bindings-pkgconfig)
  # file(GENERATE) because the library's directory is a generator expression.
  file(GENERATE OUTPUT ${_acache_go_pc_dir}/aether-cache.pc CONTENT
"libdir=$<TARGET_FILE_DIR:aethercache>
includedir=${PROJECT_SOURCE_DIR}/include

Name: aether-cache
Description: libaethercache, build tree (for the Go binding tests)
Version: ${PROJECT_VERSION}
Libs: -L\${libdir} -laethercache
Cflags: -I\${includedir}
")
  if(ACACHE_GO)
    add_test(NAME go
      COMMAND ${CMAKE_COMMAND} -E env
              PKG_CONFIG_PATH=${_acache_go_pc_dir}
              LD_LIBRARY_PATH=$<TARGET_FILE_DIR:aethercache>
              ACACHE_SHARED_DIR=${ACACHE_SHARED_DIR}
              GOCACHE=${PROJECT_BINARY_DIR}/go/cache
              GOPATH=${PROJECT_BINARY_DIR}/go/path
              GOFLAGS=-mod=mod GOPROXY=off GO111MODULE=on CGO_ENABLED=1
              ${ACACHE_GO} test -count=1 ./...
      WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}/bindings/go)
    set_tests_properties(go PROPERTIES LABELS integration TIMEOUT 600)

    # The module as an application consumes it: a module outside the tree
    # (bindings/go/testdata/consumer/main.go) whose go.mod requires the
    # binding and replaces it with bindings/go, built with the network off
    # and run against this build's library.
    set(_acache_consumer ${PROJECT_BINARY_DIR}/go/consumer)
    file(MAKE_DIRECTORY ${_acache_consumer})
    file(WRITE ${_acache_consumer}/go.mod
"module example.com/acache-consumer

go 1.19

require github.com/aether-cache/libaethercache/bindings/go v0.0.0

replace github.com/aether-cache/libaethercache/bindings/go => ${PROJECT_SOURCE_DIR}/bindings/go
")
    configure_file(${PROJECT_SOURCE_DIR}/bindings/go/testdata/consumer/main.go
                   ${_acache_consumer}/main.go COPYONLY)
    add_test(NAME go-consumer
      COMMAND ${CMAKE_COMMAND} -E env
              PKG_CONFIG_PATH=${_acache_go_pc_dir}
              LD_LIBRARY_PATH=$<TARGET_FILE_DIR:aethercache>
              GOCACHE=${PROJECT_BINARY_DIR}/go/cache
              GOPATH=${PROJECT_BINARY_DIR}/go/path
              GOFLAGS=-mod=mod GOPROXY=off GO111MODULE=on CGO_ENABLED=1
              sh -c "${ACACHE_GO} build -o consumer . && ./consumer"
      WORKING_DIRECTORY ${_acache_consumer})
    set_tests_properties(go-consumer PROPERTIES LABELS integration TIMEOUT 300
      PASS_REGULAR_EXPRESSION "touch TouchCreated pin prov/ep/pk ttl 5m0s miss true")
  else()
    message(STATUS "go binding tests: no go toolchain (apt-get install golang-go)")
    add_test(NAME go COMMAND sh -c "echo 'no go toolchain found' >&2; exit 77")
    set_tests_properties(go PROPERTIES LABELS integration SKIP_RETURN_CODE 77)
    add_test(NAME go-consumer COMMAND sh -c "echo 'no go toolchain found' >&2; exit 77")
    set_tests_properties(go-consumer PROPERTIES LABELS integration SKIP_RETURN_CODE 77)
  endif()
endif()
