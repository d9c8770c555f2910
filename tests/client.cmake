# tests/client.cmake: libvfiobroker and vfio-brokerctl.
#   test_client            the device handle against a fake worker thread (and the real
#                          vfio-worker's standalone mode on tests/fixtures/edu.img when built)
#   test_ring              the shared-memory ring for trapped accesses: negotiation, the same
#                          answers as the socket, bad offers, a scribbling VMM (real worker)
#   test_client_uv         the event fd driven by a libuv loop (uv_poll_t)
#   test_client_ctl        vfio-brokerctl, run as a program against a fake broker thread
#   test_client_pkgconfig  the installed library, consumed through pkg-config and CMake

find_package(Threads REQUIRED)

# Both run against the fake worker thread and the real vfio-worker on the fixtures.
foreach(t client ring)
	vb_unit_test(${t}
		SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_${t}.c
			${CMAKE_CURRENT_SOURCE_DIR}/test_client_fake.c
		LIBS vfiobroker vb_ipc Threads::Threads)
	target_compile_definitions(test_${t} PRIVATE
		VB_WORKER_PATH="$<TARGET_FILE:vfio-worker>"
		VB_FIXTURES="${CMAKE_CURRENT_SOURCE_DIR}/fixtures")
	add_dependencies(test_${t} vfio-worker)
endforeach()

vb_unit_test(client_uv
	SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_client_uv.c
		${CMAKE_CURRENT_SOURCE_DIR}/test_client_fake.c
	LIBS vfiobroker vb_ipc PkgConfig::LIBUV Threads::Threads)

vb_unit_test(client_ctl
	SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_client_ctl.c
		${CMAKE_CURRENT_SOURCE_DIR}/brokerctl_env.c
	LIBS vfiobroker vb_ipc PkgConfig::JSONC Threads::Threads)
target_compile_definitions(test_client_ctl PRIVATE
	VB_BROKERCTL_PATH="$<TARGET_FILE:vfio-brokerctl>")
add_dependencies(test_client_ctl vfio-brokerctl)

vb_unit_test(client_pkgconfig
	SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_client_pkgconfig.c)
set(VB_CONSUMER_FLAGS "")
if(VB_SANITIZE)
	# An instrumented library needs an instrumented program to load it.
	set(VB_CONSUMER_FLAGS "-fsanitize=address,undefined")
endif()
target_compile_definitions(test_client_pkgconfig PRIVATE
	VB_CMAKE="${CMAKE_COMMAND}"
	VB_CC="${CMAKE_C_COMPILER}"
	VB_BUILD_DIR="${CMAKE_BINARY_DIR}"
	VB_LIBDIR="${CMAKE_INSTALL_LIBDIR}"
	VB_VERSION="${PROJECT_VERSION}"
	VB_EXTRA_CFLAGS="${VB_CONSUMER_FLAGS}")
add_dependencies(test_client_pkgconfig vfiobroker vfio-brokerctl)
