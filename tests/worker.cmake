# worker/ tests: the emulation core (config space, MSI-X, device images) and the worker binary's
# integration tests, in standalone mode and against a fake broker.
set(VB_WKR_TEST_DEFS VB_FIXTURES="${CMAKE_CURRENT_LIST_DIR}/fixtures")
foreach(t cfg cfg_caps msix intx devimg dma_held)
	vb_unit_test(${t} SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_${t}.c LIBS vb_worker_core)
	target_compile_definitions(test_${t} PRIVATE ${VB_WKR_TEST_DEFS})
	target_include_directories(test_${t} PRIVATE ${CMAKE_CURRENT_LIST_DIR})
endforeach()

# The vfio-worker binary in standalone mode, driven over ipc. Normal builds run it with its
# seccomp filter in kill mode (so the test also proves the policy lets it serve); sanitizer
# builds cannot (the sanitizer runtimes make calls outside the policy), so they run it with
# --seccomp=off.
if(VB_SANITIZE OR VB_FUZZ)
	set(VB_WKR_SECCOMP off)
else()
	set(VB_WKR_SECCOMP kill)
endif()
vb_unit_test(worker_standalone
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_worker_standalone.c LIBS vb_ipc)
target_compile_definitions(test_worker_standalone PRIVATE ${VB_WKR_TEST_DEFS}
	VB_WORKER_BIN="$<TARGET_FILE:vfio-worker>" VB_WORKER_SECCOMP="${VB_WKR_SECCOMP}")
add_dependencies(test_worker_standalone vfio-worker)

# The vfio-worker binary in broker mode against a fake broker on its fd 3.
find_package(Threads REQUIRED)
# Also the broker's side of adoption (broker/worker.c's brk_worker_adopt) with real workers.
vb_unit_test(worker_broker SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_worker_broker.c
	${CMAKE_CURRENT_LIST_DIR}/vfu/vfu_client.c LIBS vb_brokerd vb_ipc vb_worker_core vb_base
	Threads::Threads)
target_include_directories(test_worker_broker PRIVATE ${CMAKE_CURRENT_LIST_DIR}/vfu)
target_compile_definitions(test_worker_broker PRIVATE ${VB_WKR_TEST_DEFS}
	VB_WORKER_BIN="$<TARGET_FILE:vfio-worker>" VB_WORKER_SECCOMP="${VB_WKR_SECCOMP}")
add_dependencies(test_worker_broker vfio-worker)

# The vfio-user server of the vfio-worker binary in standalone mode, over its stream socket: its
# commands, and hostile framing and sessions (vfu_env.c starts the worker for both).
foreach(t vfio_user vfio_user_framing)
	vb_unit_test(${t} SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_${t}.c
		${CMAKE_CURRENT_LIST_DIR}/vfu_env.c ${CMAKE_CURRENT_LIST_DIR}/vfu/vfu_client.c
		LIBS vb_ipc vb_base PkgConfig::JSONC)
	target_include_directories(test_${t} PRIVATE ${CMAKE_CURRENT_LIST_DIR}/vfu)
	target_compile_definitions(test_${t} PRIVATE ${VB_WKR_TEST_DEFS}
		VB_WORKER_BIN="$<TARGET_FILE:vfio-worker>" VB_WORKER_SECCOMP="${VB_WKR_SECCOMP}")
	add_dependencies(test_${t} vfio-worker)
endforeach()

# The ring (worker/ring.c) with the deferred-reply interface (worker/defer.c): the worker's VMM
# server in this process on a backend that answers interrupt routing when the test says so.
vb_unit_test(ring_defer SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_ring_defer.c
	${PROJECT_SOURCE_DIR}/worker/server.c ${PROJECT_SOURCE_DIR}/worker/server_req.c
	${PROJECT_SOURCE_DIR}/worker/ring.c ${PROJECT_SOURCE_DIR}/worker/vmm_ops.c
	${PROJECT_SOURCE_DIR}/worker/vmm_serve.c ${PROJECT_SOURCE_DIR}/worker/defer.c
	${PROJECT_SOURCE_DIR}/worker/standalone.c
	LIBS vb_worker_core vb_ipc_uv)
target_compile_definitions(test_ring_defer PRIVATE ${VB_WKR_TEST_DEFS})
