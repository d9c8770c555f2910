# tests/policy.cmake: the seccomp policies, their compiler and the worker sandbox (policy/).
# Every test here needs root (the suite runs as root): they load filters, create namespaces and
# write uid maps.

# sbx_helper: a small static program started through sbx_spawn_worker() that reports what it
# sees from inside the sandbox. Static and without sanitizers: the sandbox root is empty.
add_executable(sbx_helper sbx_helper.c)
target_link_libraries(sbx_helper PRIVATE vb_policy_nosan)
target_link_options(sbx_helper PRIVATE -static)
set_target_properties(sbx_helper PROPERTIES POSITION_INDEPENDENT_CODE OFF)
vb_strip_sanitizers(sbx_helper)

vb_unit_test(seccomp SOURCES test_seccomp.c seccomp_worker_kills.c seccomp_broker_tests.c seccomp_probe.c LIBS vb_sandbox vb_broker_core
	vb_brokerd_base vb_worker_core PkgConfig::LIBUV)
target_compile_definitions(test_seccomp PRIVATE SBX_HELPER_PATH="$<TARGET_FILE:sbx_helper>"
	VB_FIXTURES="${CMAKE_CURRENT_SOURCE_DIR}/fixtures")
add_dependencies(test_seccomp sbx_helper)

vb_unit_test(sandbox SOURCES test_sandbox.c LIBS vb_sandbox)
target_compile_definitions(test_sandbox PRIVATE SBX_HELPER_PATH="$<TARGET_FILE:sbx_helper>")
add_dependencies(test_sandbox sbx_helper)

vb_unit_test(policyc SOURCES test_policyc.c)
target_compile_definitions(test_policyc PRIVATE POLICYC_PATH="$<TARGET_FILE:policyc>")
add_dependencies(test_policyc policyc)

# libc_syscalls: no libc function whose system calls the broker's or the worker's policy kills
# (qsort's sysinfo first) in what vfio-brokerd imports, nor in the worker's own objects and the
# project archives it links (a static worker imports nothing; see the script).
add_test(NAME libc_syscalls
	 COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/libc_syscalls.sh
	 broker $<TARGET_FILE:vfio-brokerd>
	 -- worker $<TARGET_FILE:vfio-worker> $<TARGET_OBJECTS:vfio-worker>
	 $<TARGET_FILE:vb_worker_core> $<TARGET_FILE:vb_base> $<TARGET_FILE:vb_ipc>
	 $<TARGET_FILE:vb_proto> $<TARGET_FILE:vb_policy_nosan>
	 COMMAND_EXPAND_LISTS)
