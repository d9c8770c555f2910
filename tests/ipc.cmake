# ipc/ tests: the channel library (test_ipc, test_ipc_send), its receive path against malformed
# datagrams (test_ipc_recv) and its libuv glue (test_ipc_uv).
find_package(Threads REQUIRED)
vb_unit_test(ipc SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_ipc.c
	LIBS vb_ipc Threads::Threads)
vb_unit_test(ipc_send SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_ipc_send.c
	LIBS vb_ipc Threads::Threads)
vb_unit_test(ipc_recv SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_ipc_recv.c LIBS vb_ipc)
vb_unit_test(ipc_uv SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_ipc_uv.c
	LIBS vb_ipc_uv Threads::Threads)
