# Fuzz targets (tests/fuzz/). vb_fuzz_target(NAME SOURCES... LIBS...) builds, with VB_FUZZ=ON
# and clang, the libFuzzer binary build/bin/fuzz_NAME; and always the unit test
# test_fuzz_NAME_corpus, which replays the checked-in corpus tests/fuzz/corpus/NAME/ through the
# same target so that every build exercises it.
#
#   CC=clang cmake -S . -B build-fuzz -DVB_FUZZ=ON && cmake --build build-fuzz --target fuzz_NAME
#   mkdir -p /tmp/NAME && build-fuzz/bin/fuzz_NAME -max_total_time=60 /tmp/NAME tests/fuzz/corpus/NAME
# (libFuzzer writes new inputs into its first directory: keep the checked-in one second.)
# DEFS and INCLUDES go to both executables (a target compiling a module's sources itself needs
# the module's private headers).
function(vb_fuzz_target name)
	cmake_parse_arguments(F "" "" "SOURCES;LIBS;DEFS;INCLUDES" ${ARGN})
	if(VB_FUZZ)
		add_executable(fuzz_${name} ${F_SOURCES})
		target_link_libraries(fuzz_${name} PRIVATE ${F_LIBS})
		target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer)
		target_compile_definitions(fuzz_${name} PRIVATE ${F_DEFS})
		target_include_directories(fuzz_${name} PRIVATE ${F_INCLUDES})
		list(APPEND VB_FUZZ_TARGETS fuzz_${name})
		set(VB_FUZZ_TARGETS ${VB_FUZZ_TARGETS} PARENT_SCOPE)
	endif()
	vb_unit_test(fuzz_${name}_corpus
		SOURCES ${F_SOURCES} ${CMAKE_CURRENT_LIST_DIR}/fuzz/replay.c
		LIBS ${F_LIBS})
	target_compile_definitions(test_fuzz_${name}_corpus PRIVATE ${F_DEFS}
		VB_FUZZ_NAME="${name}"
		VB_FUZZ_CORPUS="${CMAKE_CURRENT_LIST_DIR}/fuzz/corpus/${name}")
	target_include_directories(test_fuzz_${name}_corpus PRIVATE ${F_INCLUDES})
endfunction()

vb_fuzz_target(ipc_recv SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_ipc_recv.c LIBS vb_ipc)

# worker/: the device-image parser (and device initialization on what it yields) and the
# config-space/MSI-X/region access paths. Seeds: tests/fuzz/make_worker_corpus.py.
vb_fuzz_target(image SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_image.c LIBS vb_worker_core)
vb_fuzz_target(cfg SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_cfg.c LIBS vb_worker_core)

# broker/: the state record a restarted broker loads (record*.c). Seeds:
# tests/fuzz/make_record_corpus.py.
vb_fuzz_target(record SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_record.c LIBS vb_broker_core)

# broker/: the configuration loader (libinih plus the broker's value parsing).
vb_fuzz_target(config SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_config.c LIBS vb_brokerd_base)

# worker/: the vfio-user server's receive path (framing, command table, VERSION's JSON) against
# a device built from e1000e.img. Seeds: tests/fuzz/make_vfu_corpus.py.
vb_fuzz_target(vfu SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_vfu.c
	${PROJECT_SOURCE_DIR}/worker/vfu_cmd.c ${PROJECT_SOURCE_DIR}/worker/vfu_conn.c
	${PROJECT_SOURCE_DIR}/worker/vfu_version.c ${PROJECT_SOURCE_DIR}/worker/vmm_ops.c
	${PROJECT_SOURCE_DIR}/worker/defer.c ${PROJECT_SOURCE_DIR}/worker/vmm_serve.c
	LIBS vb_worker_core PkgConfig::JSONC PkgConfig::LIBUV)
foreach(t test_fuzz_vfu_corpus fuzz_vfu)
	if(TARGET ${t})
		target_compile_definitions(${t} PRIVATE
			VB_FIXTURES="${CMAKE_CURRENT_LIST_DIR}/fixtures")
	endif()
endforeach()

# The policy compiler's input: the parser and checks, then libseccomp's build and export.
vb_fuzz_target(policy
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_policy.c ${PROJECT_SOURCE_DIR}/policy/policyc_bpf.c
		${PROJECT_SOURCE_DIR}/policy/policyc_parse.c
		${PROJECT_SOURCE_DIR}/policy/policyc_consts.c
	LIBS vb_base PkgConfig::SECCOMP)

# VMM -> worker: the worker's VMM server, request handlers and standalone backend on a device
# image, driven by a list of device-protocol requests (fuzz/fuzz_msgs.h).
set(VB_FUZZ_WORKER_SRCS ${PROJECT_SOURCE_DIR}/worker/server.c
	${PROJECT_SOURCE_DIR}/worker/server_req.c ${PROJECT_SOURCE_DIR}/worker/ring.c
	${PROJECT_SOURCE_DIR}/worker/vmm_ops.c ${PROJECT_SOURCE_DIR}/worker/vmm_serve.c
	${PROJECT_SOURCE_DIR}/worker/defer.c)
vb_fuzz_target(vmm_req
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_vmm_req.c ${VB_FUZZ_WORKER_SRCS}
		${PROJECT_SOURCE_DIR}/worker/standalone.c
	LIBS vb_worker_core vb_ipc_uv
	DEFS VB_FIXTURES="${CMAKE_CURRENT_LIST_DIR}/fixtures")

# VMM -> worker through a shared-memory ring: the page written and the doorbell rung at will, on
# the same server as vmm_req (worker/ring.c, then the request table and handlers).
# The worker's watch of the page after an answer is 0 ns there (worker/ring.c, WKR_RING_SPIN_NS):
# the fuzzer is the VMM and the worker in one thread.
vb_fuzz_target(ring
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_ring.c ${VB_FUZZ_WORKER_SRCS}
		${PROJECT_SOURCE_DIR}/worker/standalone.c
	LIBS vb_worker_core vb_ipc_uv
	DEFS VB_FIXTURES="${CMAKE_CURRENT_LIST_DIR}/fixtures" WKR_RING_SPIN_NS=0)

# broker -> worker: the worker's handoff, start-up and broker-request handling (broker_link.c,
# broker_handoff.c, broker_ops.c).
set(VB_FUZZ_VFU_SRCS ${PROJECT_SOURCE_DIR}/worker/vfu_server.c
	${PROJECT_SOURCE_DIR}/worker/vfu_cmd.c ${PROJECT_SOURCE_DIR}/worker/vfu_conn.c
	${PROJECT_SOURCE_DIR}/worker/vfu_version.c)
vb_fuzz_target(worker_brk
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_worker_brk.c ${VB_FUZZ_WORKER_SRCS}
		${PROJECT_SOURCE_DIR}/worker/broker_link.c ${PROJECT_SOURCE_DIR}/worker/broker_handoff.c
		${PROJECT_SOURCE_DIR}/worker/broker_ops.c ${PROJECT_SOURCE_DIR}/worker/broker_call.c
		${VB_FUZZ_VFU_SRCS}
	LIBS vb_worker_core vb_ipc_uv PkgConfig::JSONC
	DEFS VB_FIXTURES="${CMAKE_CURRENT_LIST_DIR}/fixtures")

# worker -> broker: broker/worker*.c (request table, handlers, handoff, faults) over the VFIO
# core on the fake kernel (fake_vfio.c); the target itself stands in for spawn.c and supervise.c.
vb_fuzz_target(brk_worker
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_brk_worker.c ${PROJECT_SOURCE_DIR}/broker/worker.c
		${PROJECT_SOURCE_DIR}/broker/worker_req.c ${CMAKE_CURRENT_LIST_DIR}/fuzz/fake_proc.c
	LIBS vb_brokerd_base vb_fake_vfio)

# orchestrator -> broker: the whole daemon (control*.c, daemon*.c, worker*.c, the VFIO core) on the
# fake kernel and sysfs tree, with fake workers (fake_proc.c) that acknowledge their handoffs.
vb_fuzz_target(ctl
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_ctl.c ${CMAKE_CURRENT_LIST_DIR}/fuzz/fake_proc.c
		${PROJECT_SOURCE_DIR}/broker/daemon.c ${PROJECT_SOURCE_DIR}/broker/daemon_status.c
		${PROJECT_SOURCE_DIR}/broker/daemon_record.c ${PROJECT_SOURCE_DIR}/broker/daemon_vfio.c
		${PROJECT_SOURCE_DIR}/broker/daemon_worker.c ${PROJECT_SOURCE_DIR}/broker/worker.c
		${PROJECT_SOURCE_DIR}/broker/worker_req.c ${PROJECT_SOURCE_DIR}/broker/pool.c
	LIBS vb_brokerd_base vb_fake_vfio vb_sandbox)

if(VB_FUZZ)
	# `make fuzz` builds them all through this one target.
	add_custom_target(fuzz_all DEPENDS ${VB_FUZZ_TARGETS})
endif()
