# broker/daemon.cmake: the vfio-brokerd process. The control API, worker spawn and supervision,
# configuration and logging, on top of the VFIO core library (core.cmake, vb_broker_core).
pkg_check_modules(INIH REQUIRED IMPORTED_TARGET inih)
# sd_notify, socket activation, the watchdog (main.c) and structured journal entries (log.c).
pkg_check_modules(LIBSYSTEMD REQUIRED IMPORTED_TARGET libsystemd)

# The pieces that do not touch VFIO, linked by the unit tests too.
add_library(vb_brokerd_base STATIC
	${CMAKE_CURRENT_SOURCE_DIR}/config.c
	${CMAKE_CURRENT_SOURCE_DIR}/config_report.c
	${CMAKE_CURRENT_SOURCE_DIR}/config_value.c
	${CMAKE_CURRENT_SOURCE_DIR}/control.c
	${CMAKE_CURRENT_SOURCE_DIR}/control_handover.c
	${CMAKE_CURRENT_SOURCE_DIR}/control_req.c
	${CMAKE_CURRENT_SOURCE_DIR}/fdstore.c
	${CMAKE_CURRENT_SOURCE_DIR}/log.c
	${CMAKE_CURRENT_SOURCE_DIR}/metrics.c
	${CMAKE_CURRENT_SOURCE_DIR}/registry.c)
target_include_directories(vb_brokerd_base PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_compile_definitions(vb_brokerd_base PRIVATE
	VB_WORKER_PATH_DEFAULT="${CMAKE_INSTALL_FULL_LIBEXECDIR}/vfio-broker/vfio-worker")
target_link_libraries(vb_brokerd_base PUBLIC vb_ipc_uv vb_proto PkgConfig::INIH PkgConfig::LIBUV
	PkgConfig::LIBSYSTEMD)

# The process: VFIO-facing pieces on top of the core library and the sandbox.
add_library(vb_brokerd STATIC
	${CMAKE_CURRENT_SOURCE_DIR}/caps.c
	${CMAKE_CURRENT_SOURCE_DIR}/daemon.c
	${CMAKE_CURRENT_SOURCE_DIR}/daemon_adopt.c
	${CMAKE_CURRENT_SOURCE_DIR}/daemon_record.c
	${CMAKE_CURRENT_SOURCE_DIR}/daemon_status.c
	${CMAKE_CURRENT_SOURCE_DIR}/daemon_vfio.c
	${CMAKE_CURRENT_SOURCE_DIR}/daemon_worker.c
	${CMAKE_CURRENT_SOURCE_DIR}/pool.c
	${CMAKE_CURRENT_SOURCE_DIR}/spawn.c
	${CMAKE_CURRENT_SOURCE_DIR}/supervise.c
	${CMAKE_CURRENT_SOURCE_DIR}/worker.c
	${CMAKE_CURRENT_SOURCE_DIR}/worker_req.c)
target_link_libraries(vb_brokerd PUBLIC vb_brokerd_base vb_broker_core vb_sandbox
	PkgConfig::CAPNG vb_base)
add_executable(vfio-brokerd ${CMAKE_CURRENT_SOURCE_DIR}/main.c)
target_compile_definitions(vfio-brokerd PRIVATE VB_VERSION="${PROJECT_VERSION}")
target_link_libraries(vfio-brokerd PRIVATE vb_brokerd vb_policy PkgConfig::LIBSYSTEMD)
install(TARGETS vfio-brokerd DESTINATION ${CMAKE_INSTALL_SBINDIR})
