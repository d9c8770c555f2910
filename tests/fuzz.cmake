# Fuzz targets (tests/fuzz/). vb_fuzz_target(NAME SOURCES... LIBS...) builds, with VB_FUZZ=ON
# and clang, the libFuzzer binary build/bin/fuzz_NAME; and always the unit test
# test_fuzz_NAME_corpus, which replays the checked-in corpus tests/fuzz/corpus/NAME/ through the
# same target so that every build exercises it.
#
#   CC=clang cmake -S . -B build-fuzz -DVB_FUZZ=ON && cmake --build build-fuzz --target fuzz_NAME
#   mkdir -p /tmp/NAME && build-fuzz/bin/fuzz_NAME -max_total_time=60 /tmp/NAME tests/fuzz/corpus/NAME
# (libFuzzer writes new inputs into its first directory: keep the checked-in one second.)
function(vb_fuzz_target name)
	cmake_parse_arguments(F "" "" "SOURCES;LIBS" ${ARGN})
	if(VB_FUZZ)
		add_executable(fuzz_${name} ${F_SOURCES})
		target_link_libraries(fuzz_${name} PRIVATE ${F_LIBS})
		target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer)
	endif()
	vb_unit_test(fuzz_${name}_corpus
		SOURCES ${F_SOURCES} ${CMAKE_CURRENT_LIST_DIR}/fuzz/replay.c
		LIBS ${F_LIBS})
	target_compile_definitions(test_fuzz_${name}_corpus PRIVATE
		VB_FUZZ_NAME="${name}"
		VB_FUZZ_CORPUS="${CMAKE_CURRENT_LIST_DIR}/fuzz/corpus/${name}")
endfunction()

vb_fuzz_target(ipc_recv SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_ipc_recv.c LIBS vb_ipc)

# worker/: the device-image parser (and device initialization on what it yields) and the
# config-space/MSI-X/region access paths. Seeds: tests/fuzz/make_worker_corpus.py.
vb_fuzz_target(image SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_image.c LIBS vb_worker_core)
vb_fuzz_target(cfg SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_cfg.c LIBS vb_worker_core)

# broker/: the configuration loader (libinih plus the broker's value parsing).
vb_fuzz_target(config SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_config.c LIBS vb_brokerd_base)

# worker/: the vfio-user server's receive path (framing, command table, VERSION's JSON) against
# a device built from e1000e.img. Seeds: tests/fuzz/make_vfu_corpus.py.
vb_fuzz_target(vfu SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_vfu.c
	${PROJECT_SOURCE_DIR}/worker/vfu_cmd.c ${PROJECT_SOURCE_DIR}/worker/vfu_conn.c
	${PROJECT_SOURCE_DIR}/worker/vfu_version.c ${PROJECT_SOURCE_DIR}/worker/vmm_ops.c
	LIBS vb_worker_core PkgConfig::JSONC PkgConfig::LIBUV)
foreach(t test_fuzz_vfu_corpus fuzz_vfu)
	if(TARGET ${t})
		target_compile_definitions(${t} PRIVATE
			VB_FIXTURES="${CMAKE_CURRENT_LIST_DIR}/fixtures")
	endif()
endforeach()
