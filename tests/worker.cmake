# worker/ tests: the emulation core (config space, MSI-X, device images) and, when the worker
# binary is built, its integration test in standalone mode.
set(VB_WKR_TEST_DEFS VB_FIXTURES="${CMAKE_CURRENT_LIST_DIR}/fixtures")
foreach(t cfg msix devimg)
	vb_unit_test(${t} SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_${t}.c LIBS vb_worker_core)
	target_compile_definitions(test_${t} PRIVATE ${VB_WKR_TEST_DEFS})
	target_include_directories(test_${t} PRIVATE ${CMAKE_CURRENT_LIST_DIR})
endforeach()
