# tests/broker_daemon.cmake: unit tests of the vfio-brokerd process (configuration, control
# dispatch, device registry, the daemon on fakes). The VFIO paths are proved in the guest.
vb_unit_test(config SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_config.c LIBS vb_brokerd_base)
target_compile_definitions(test_config PRIVATE
	VB_CONFIG_EXAMPLE="${PROJECT_SOURCE_DIR}/broker/vfio-brokerd.conf.example")
vb_unit_test(registry SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_registry.c LIBS vb_brokerd_base)
# The control server on a fake daemon (control_env.c): its requests, and admission and peers.
foreach(t control control_peers)
	vb_unit_test(${t} SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_${t}.c
		${CMAKE_CURRENT_SOURCE_DIR}/control_env.c LIBS vb_brokerd_base)
endforeach()
# The fd store against a fake NOTIFY_SOCKET, and the re-exec handover by exec'ing itself.
vb_unit_test(fdstore SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_fdstore.c LIBS vb_brokerd_base)
vb_unit_test(log SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_log.c LIBS vb_brokerd_base)
vb_unit_test(caps SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_caps.c LIBS vb_brokerd)
# Heartbeat judgement of broker/supervise.c on a real child and a real loop that stalls.
vb_unit_test(supervise SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_supervise.c LIBS vb_brokerd)
# The daemon's flows and device state machine on the host, and its state record and adoption
# by the next broker: fake VFIO, fake sysfs, fake workers (daemon_env.c).
foreach(t daemon daemon_adopt)
	vb_unit_test(${t} SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_${t}.c
		${CMAKE_CURRENT_SOURCE_DIR}/daemon_env.c
		LIBS vb_brokerd vb_fake_vfio)
endforeach()
# The real vfio-brokerd re-executing itself under its own seccomp policy (SIGUSR2): not in the
# sanitizer build, whose runtime's start-up under the inherited filter is not the product's.
if(NOT VB_SANITIZE)
	vb_unit_test(brokerd_reexec SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_brokerd_reexec.c
		LIBS vb_brokerd_base)
	target_compile_definitions(test_brokerd_reexec PRIVATE
		VB_BROKERD_PATH="$<TARGET_FILE:vfio-brokerd>"
		VB_WORKER_PATH="$<TARGET_FILE:vfio-worker>")
	add_dependencies(test_brokerd_reexec vfio-brokerd vfio-worker)
endif()
